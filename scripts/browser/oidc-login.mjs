// Signs in at the test OpenID provider in headless Chromium, as an operator would after
// `rekey login --oidc` printed the address, and prints what the browser saw last as one JSON
// line: the provider's login page (any login name and password), its consent page, then the
// CLI's loopback listener.
//
//   node oidc-login.mjs <auth url> <login name>
//
// Finds playwright-core through REKEY_TEST_BROWSER_MODULES and the browser at
// REKEY_TEST_CHROMIUM (default /usr/bin/chromium), as reset.mjs does.
import { createRequire } from 'node:module';

const modules = process.env.REKEY_TEST_BROWSER_MODULES;
if (!modules) {
  console.error('REKEY_TEST_BROWSER_MODULES is not set (scripts/browser/install.sh, scripts/test.sh)');
  process.exit(2);
}
const { chromium } = createRequire(`${modules}/`)('playwright-core');
const [url, login] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.REKEY_TEST_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
const seen = { pages: [] };
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(url);
  seen.pages.push(await page.title());
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any password');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign-in' }).click()]);
  seen.pages.push(await page.title());
  const consent = page.getByRole('button', { name: 'Continue' });
  if (await consent.count()) {
    await Promise.all([page.waitForNavigation(), consent.click()]);
  }
  seen.url = page.url().replace(/\?.*/, '');
  seen.text = ((await page.locator('body').textContent()) || '').trim();
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
