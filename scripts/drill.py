#!/usr/bin/env python3
"""The breach drill, driven through the `rekey` CLI against a running server and the local peers.

scripts/drill.sh sets everything up (peers, server) and runs this. The story:

1. 50 tenants in uk, us and eu, each with an ldap bind account (OpenLDAP), an entra-app
   application with a certificate of its own (the OpenID provider and the Graph stand-in), and a
   POP3 journaling mailbox and an SMTP relay login (Dovecot).
2. The uk and us tenants' key versions and one uk application certificate are declared stolen.
3. Containment: the keys are marked compromised (and rotated off), the certificate revoked,
   and every credential in scope frozen for connectors.
4. A campaign rotates ldap and entra-app credentials itself and emails each uk and us tenant a
   single-use link for its mail credentials. A scripted browser (headless Chromium) plays each
   tenant's administrator: sets a new password at Dovecot, then enters it on the page (the first
   one tries a wrong password first, and is refused).
5. The report is printed and written as HTML; eu must come out untouched.

Needs REKEY_ADDR, REKEY_TOKEN, REKEY_BIN, the REKEY_TEST_* peer variables and
REKEY_TEST_BROWSER_MODULES. Exits non-zero if any step does not come out as it should.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REKEY = os.environ["REKEY_BIN"]
ENV = os.environ
ROOT = Path(__file__).resolve().parent.parent
OUT = Path(ENV.get("REKEY_DRILL_OUT", "."))
TENANTS = int(ENV.get("REKEY_DRILL_TENANTS", "50"))
REGIONS = ["uk", "us", "eu"]
RUN = f"{int(time.time()) % 100000:05d}"


def step(text):
    print(f"\n== {text}", flush=True)


def rekey(*args, stdin=None, parse=True):
    out = subprocess.run([REKEY, "-o", "json", *args], input=stdin, capture_output=True)
    if out.returncode != 0:
        sys.exit(f"rekey {' '.join(args)} failed:\n{out.stderr.decode()}")
    return json.loads(out.stdout) if parse else out.stdout.decode()


def tenant_name(i):
    return f"{REGIONS[i % 3]}-customer-{i:02d}"


def ldap_dn(i):
    return f"uid=drill{RUN}-{i},ou=services,dc=rekey,dc=test"


def mail_user(i):
    return f"drill{RUN}-{i}@rekey.test"


def set_mail_passwords(passwords):
    """Adds or replaces Dovecot users in the passwd-file it reads (it notices within a second)."""
    path = Path(ENV["REKEY_TEST_DOVECOT_USERS"])
    lines = [l for l in path.read_text().splitlines() if l.split(":", 1)[0] not in passwords]
    lines += [f"{user}:{{PLAIN}}{pw}::::" for user, pw in passwords.items()]
    tmp = path.with_suffix(".drill")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def mail_login_works(user, password):
    url = f"pop3s://localhost:{ENV['REKEY_TEST_POP3S_PORT']}/"
    args = ["curl", "-s", "--cacert", ENV["REKEY_TEST_CA"], "-u", f"{user}:{password}", url]
    return subprocess.run(args, capture_output=True).returncode == 0


def wait(what, check, seconds=120):
    deadline = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)


def unquote(text):
    """Undoes quoted-printable soft breaks and escapes, as a mail client would."""
    text = text.replace("=\r\n", "").replace("=\n", "")
    return re.sub(r"=([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def link_for(contact):
    maildir = Path(ENV["REKEY_TEST_SINK_MAILDIR"]) / "new"
    for f in sorted(maildir.glob("*"), key=lambda p: p.stat().st_mtime) if maildir.exists() else []:
        text = unquote(f.read_text(errors="replace"))
        if re.search(rf"^To: .*{re.escape(contact)}", text, re.M):
            m = re.search(r"(https?://\S+/r/[0-9a-f]{32}\.[0-9a-f]{64})", text)
            if m:
                return m.group(1)
    return None


def browser(link, secrets):
    args = ["node", str(ROOT / "scripts/browser/reset.mjs"), link] + [f"{k}={v}" for k, v in secrets.items()]
    out = subprocess.run(args, capture_output=True)
    if out.returncode != 0:
        sys.exit(f"the scripted browser failed:\n{out.stderr.decode()}")
    return json.loads(out.stdout)


def main():
    ldap_url = f"ldap://localhost:{ENV['REKEY_TEST_LDAP_PORT']}"
    oidc = ENV["REKEY_TEST_OIDC_URL"]
    ca = Path(ENV["REKEY_TEST_CA"]).read_text()
    work = Path(tempfile.mkdtemp(prefix="rekey-drill-"))

    step(f"{TENANTS} tenants in uk, us and eu, four credentials each, against the local peers")
    ldif = "".join(
        f"dn: {ldap_dn(i)}\nobjectClass: inetOrgPerson\nuid: drill{RUN}-{i}\ncn: drill {i}\nsn: service\n"
        f"userPassword: ldap-{RUN}-{i}\n\n"
        for i in range(TENANTS)
    )
    subprocess.run(
        ["ldapadd", "-x", "-H", ldap_url.replace("localhost", "127.0.0.1"), "-D", "cn=admin,dc=rekey,dc=test", "-w", "admin-initial-pw"],
        input=ldif.encode(), check=True, capture_output=True,
    )
    set_mail_passwords({mail_user(i): f"mail-{RUN}-{i}" for i in range(TENANTS)})
    for i in range(TENANTS):
        t = tenant_name(i)
        rekey("tenant", "create", t, "--region", REGIONS[i % 3], "--contact", f"admin@{t}.example")
        rekey("cred", "put", f"{t}/directory", "--kind", "ldap", "--set", f"url={ldap_url}",
              "--set", f"bind_dn={ldap_dn(i)}", "--set", f"ca_pem={ca}", "--secret-stdin", stdin=f"ldap-{RUN}-{i}".encode())
        # One application certificate per tenant, registered with the provider as its admin would.
        cert, key = work / f"{t}.pem", work / f"{t}-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", f"/CN={t}",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-outform", "der", "-in", str(cert)], check=True, capture_output=True).stdout
        request = urllib.request.Request(f"{oidc}/_standin/applications", method="POST",
                                         data=json.dumps({"certificate": base64.b64encode(der).decode()}).encode(),
                                         headers={"content-type": "application/json"})
        app = json.load(urllib.request.urlopen(request))
        rekey("cred", "put", f"{t}/mail-api", "--kind", "entra-app", "--set", f"token_url={oidc}/token",
              "--set", f"client_id={app['appId']}", "--set", "scope=api.read", "--set", f"app_object_id={app['id']}",
              "--set", f"graph_url={oidc}", "--cert-file", str(cert), "--key-file", str(key))
        for name, kind, port, tls in [("journal", "pop3", "REKEY_TEST_POP3S_PORT", "implicit"),
                                      ("relay", "smtp", "REKEY_TEST_SUBMISSION_PORT", "starttls")]:
            rekey("cred", "put", f"{t}/{name}", "--kind", kind, "--set", "host=localhost", "--set", f"port={ENV[port]}",
                  "--set", f"tls={tls}", "--set", f"user={mail_user(i)}", "--set", f"ca_pem={ca}",
                  "--secret-stdin", stdin=f"mail-{RUN}-{i}".encode())
    checked = [rekey("cred", "verify", f"{tenant_name(i)}/{n}")["status"] for i in (0, 1, 2) for n in ("directory", "mail-api", "journal", "relay")]
    if set(checked) != {"ok"}:
        sys.exit(f"the credentials do not all open their targets: {checked}")
    print(f"{TENANTS * 4} credentials stored; a sample of 12 checked against their targets: all ok")

    step("Declared stolen: the uk and us tenant key versions, and one uk application certificate")
    stolen_cert = next(c for c in rekey("cert", "list") if c["tenant"] == tenant_name(0))
    scope = [f"key:{tenant_name(i)}@1" for i in range(TENANTS) if REGIONS[i % 3] != "eu"]
    scope.append(f"cert:{stolen_cert['sha256']}")
    args = ["incident", "open", "--title", "uk and us keys and an app certificate stolen", "--since", "14d"]
    for s in scope:
        args += ["--scope", s]
    incident = rekey(*args)
    iid = incident["incident"]["id"]
    print(f"incident {iid}: {incident['incident']['affected']} credentials in scope, by region {incident['by_region']}")

    step("Containment: compromise the keys, revoke the certificate, freeze the credentials")
    started = time.time()
    contained = rekey("incident", "contain", iid, "--freeze")
    print(f"contained in {time.time() - started:.1f} s")
    outcomes = {}
    for a in contained["actions"]:
        outcomes[(a["action"], a["outcome"])] = outcomes.get((a["action"], a["outcome"]), 0) + 1
    for (action, outcome), n in sorted(outcomes.items()):
        print(f"  {action:<20} {outcome:<8} x{n}")
    if any(a["outcome"] == "failed" for a in contained["actions"]):
        sys.exit("a containment action failed")

    step("Campaign: automatic for ldap and entra-app, emailed reset links for pop3 and smtp")
    campaign_started = time.time()
    campaign = rekey("campaign", "start", "--incident", iid, "--deadline", "7d", "--notify", "email")
    cid = campaign["id"]
    print(f"campaign {cid}: {campaign['items']} credentials")

    affected = [i for i in range(TENANTS) if REGIONS[i % 3] != "eu"]
    first = True
    for i in affected:
        t = tenant_name(i)
        link = wait(f"the email to {t}", lambda: link_for(f"admin@{t}.example"))
        new = f"new-mail-{RUN}-{i}"
        if first:
            seen = browser(link, {"journal": "not-the-new-password", "relay": "not-the-new-password"})
            refused = seen["submitted"]
            if refused["status"] != 422:
                sys.exit(f"a wrong password was not refused: {seen}")
            print(f"  {t}: a wrong password is refused: {refused['alerts'][0]}")
        set_mail_passwords({mail_user(i): new})
        wait(f"Dovecot to take {t}'s new password", lambda: mail_login_works(mail_user(i), new), 30)
        seen = browser(link, {"journal": new, "relay": new})
        if seen["submitted"]["status"] != 200:
            sys.exit(f"{t}: the reset page did not accept the new password: {seen}")
        if first:
            again = browser(link, {})
            if again["opened"]["status"] != 410:
                sys.exit(f"a used link worked again: {again}")
            print(f"  {t}: new passwords verified against Dovecot and stored; the link cannot be used again")
            first = False
    print(f"  {len(affected)} tenants reset their mail credentials through their links")

    def finished():
        s = rekey("campaign", "status", cid)
        return s if s["campaign"]["state"] == "finished" else None

    status = wait("the campaign to finish", finished, 300)
    print(f"campaign finished {time.time() - campaign_started:.0f} s after it started (the scripted administrators included)")

    step("Report")
    subprocess.run([REKEY, "-o", "table", "campaign", "status", cid], check=True)
    report = rekey("campaign", "report", cid, "--format", "json")
    by_region = {}
    for tenant in report["tenants"]:
        region = by_region.setdefault(tenant["region"], {"tenants": 0, "credentials": 0, "retired": 0})
        region["tenants"] += 1
        for item in tenant["items"]:
            region["credentials"] += 1
            region["retired"] += item["state"] == "retired"
    for region, r in sorted(by_region.items()):
        print(f"  {region}: {r['tenants']} tenants, {r['credentials']} credentials, {r['retired']} rotated and verified")
    html = OUT / "drill-report.html"
    subprocess.run([REKEY, "campaign", "report", cid, "--format", "html", "--out", str(html)], check=True, capture_output=True)
    print(f"  full report: {html.resolve()}")

    step("eu must be untouched")
    eu = rekey("cred", "list", "--region", "eu", "--limit", "10000")
    moved = [f"{c['tenant']}/{c['name']}" for c in eu if c.get("current_version") != 1]
    in_campaign = [t for t in report["tenants"] if t["region"] == "eu"]
    if moved or in_campaign or "eu" in incident["by_region"]:
        sys.exit(f"eu was touched: rotated {moved}, in the campaign {len(in_campaign)} tenants")
    print(f"  eu: {len(eu)} credentials, all still at version 1, none in the incident or the campaign")
    if status["failed"] or status["counts"]["retired"] != campaign["items"]:
        sys.exit(f"not every credential was rotated: {status['counts']}")
    print(f"\nDrill passed: {campaign['items']} credentials rotated and verified in uk and us; eu untouched.")


if __name__ == "__main__":
    main()
