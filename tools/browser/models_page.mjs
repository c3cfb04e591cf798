// Drive the Airflow UI with Playwright (playwright-core) in Debian's Chromium: log in, open the Models page,
// read the champion and the traffic split, follow the pending approval and approve it.
//
// Usage: node tools/browser/models_page.mjs '<json>' with
//   {"base": "http://127.0.0.1:PORT", "username": "...", "password": "...", "model": "fraud",
//    "expect": ["champion v1 90%", "canary v2 10%"], "approve": true, "artifacts": "/abs/dir",
//    "executablePath": "/usr/bin/chromium", "timeoutMs": 120000}
// Prints one JSON line {"ok": true, "steps": [...], "screenshots": [...]} (or {"ok": false, "error": ...}).
// No browser is downloaded: the launch uses the system Chromium given by executablePath.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const opts = JSON.parse(process.argv[2] ?? "{}");
const base = opts.base.replace(/\/$/, "");
const timeout = opts.timeoutMs ?? 120000;
const artifacts = opts.artifacts;
mkdirSync(artifacts, { recursive: true });
const steps = [];
const screenshots = [];
const step = (message) => {
  steps.push(message);
  console.error(`[browser ${new Date().toISOString().slice(11, 23)}] ${message}`);
};

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function shot(page, name) {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
  step(`screenshot ${path}`);
}

// Playwright's launch() gives Chromium a new empty --user-data-dir of its own.
const browser = await chromium.launch({
  executablePath: opts.executablePath ?? "/usr/bin/chromium",
  headless: true,
  args: CHROMIUM_FLAGS,
  timeout,
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  context.setDefaultTimeout(timeout);
  page = await context.newPage();

  // 1. log in through the simple auth manager's login page
  await page.goto(`${base}/auth/login`);
  await page.locator('input[name="username"]').fill(opts.username);
  await page.locator('input[name="password"]').fill(opts.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  const deadline = Date.now() + timeout;
  while (!(await context.cookies(base)).some((c) => c.name === "_token")) {
    if (Date.now() > deadline) throw new Error("no _token cookie after signing in");
    await page.waitForTimeout(250);
  }
  step("logged in (UI session cookie _token set)");
  // The login page then navigates to "/" by itself; a goto issued meanwhile is "interrupted by another
  // navigation". Wait for that redirect to finish, and retry the goto if one still races it.
  try {
    await page.waitForURL((url) => !url.pathname.startsWith("/auth"), { timeout: 15000 });
    await page.waitForLoadState("load");
  } catch {
    step("no redirect away from the login page within 15 s; going on");
  }

  // 2. the Models page inside the Airflow UI (the plugin's external view, an iframe on /mlops/)
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(`${base}/plugin/models`);
      break;
    } catch (error) {
      if (attempt >= 5 || !String(error).includes("interrupted by another navigation")) throw error;
      step(`navigation to the Models page interrupted (attempt ${attempt}); retrying`);
      await page.waitForLoadState("load");
    }
  }
  if (!new URL(page.url()).pathname.startsWith("/plugin/models")) {
    await page.goto(`${base}/plugin/models`);
  }
  const frame = page.frameLocator("iframe").first();
  const row = frame.locator("tr", { has: frame.locator(`a[href='models/${opts.model}']`) });
  await row.waitFor();
  for (const text of opts.expect ?? []) {
    await row.getByText(text, { exact: true }).waitFor();
    step(`Models page shows "${text}"`);
  }
  await shot(page, "models-page.png");

  // 3. the pending approval: the page links it into Airflow's required-actions UI (target _top)
  if (opts.approve) {
    const link = row.locator("a[data-top]", { hasText: opts.approvalSubject ?? "Promote" }).first();
    const href = await link.getAttribute("href");
    step(`pending approval link: ${href}`);
    await Promise.all([page.waitForURL((url) => url.pathname.includes("/required_actions")), link.click()]);
    step(`followed to ${page.url()}`);
    const button = page.getByRole("button", { name: "Approve", exact: true });
    await button.waitFor();
    await shot(page, "approval-pending.png");
    await button.click();
    await page.getByText(/Approval Received|response successful/i).first().waitFor();
    step("clicked Approve; the UI reports the response");
    await shot(page, "approval-done.png");
  }
  console.log(JSON.stringify({ ok: true, steps, screenshots }));
} catch (error) {
  if (page) {
    try {
      await shot(page, "failure.png");
    } catch {
      // the page is gone: no screenshot
    }
  }
  console.log(JSON.stringify({ ok: false, error: String(error?.stack ?? error), steps, screenshots }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
