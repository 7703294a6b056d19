// Drives a Rekey reset page in headless Chromium with JavaScript turned off, as a tenant's
// administrator would use it, and prints what the browser saw as one JSON line.
//
//   node reset.mjs <link> [<credential>=<new secret> ...]
//
// Without secrets it only opens the page. With them it fills each "New secret for <name>" field
// and submits the form. Finds playwright-core through REKEY_TEST_BROWSER_MODULES (a node_modules
// folder, see install.sh) and the browser at REKEY_TEST_CHROMIUM (default /usr/bin/chromium).
import { createRequire } from 'node:module';

const modules = process.env.REKEY_TEST_BROWSER_MODULES;
if (!modules) {
  console.error('REKEY_TEST_BROWSER_MODULES is not set (scripts/browser/install.sh, scripts/test.sh)');
  process.exit(2);
}
const { chromium } = createRequire(`${modules}/`)('playwright-core');

const [link, ...pairs] = process.argv.slice(2);
const secrets = pairs.map((p) => {
  const at = p.indexOf('=');
  return [p.slice(0, at), p.slice(at + 1)];
});

const browser = await chromium.launch({
  executablePath: process.env.REKEY_TEST_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
const seen = { console: [] };
try {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
  const describe = async (response) => ({
    status: response ? response.status() : 0,
    csp: response ? (await response.allHeaders())['content-security-policy'] || '' : '',
    heading: (await page.locator('h1').first().textContent()) || '',
    alerts: await page.locator('[role=alert] li').allTextContents(),
    fields: await page.locator('input[type=password]').evaluateAll((els) => els.map((e) => e.name)),
    text: (await page.locator('body').textContent()) || '',
    stylesheet: await page.locator('link[rel=stylesheet]').count(),
  });
  seen.opened = await describe(await page.goto(link));
  if (secrets.length > 0) {
    for (const [name, secret] of secrets) {
      await page.getByLabel(`New secret for ${name}`, { exact: true }).fill(secret);
    }
    const [response] = await Promise.all([
      page.waitForNavigation(),
      page.getByRole('button', { name: 'Check and save' }).click(),
    ]);
    seen.submitted = await describe(response);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
