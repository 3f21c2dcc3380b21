// The job center page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// the overview shows a finished job's progress, a job's page cancels a job awaiting confirmation.
// Usage: node scripts/page_e2e.mjs BASE_URL FINISHED_JOB_ID WAITING_JOB_ID SCREENSHOT_DIR
// Prints one line per check; exits non-zero on the first that fails.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.resolve(process.env.BATCHOPS_NPM_PREFIX, "node_modules") + "/");
const { chromium } = require("playwright-core");

const [base, finished, waiting, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The machine's network is closed: no background connections, no sandbox as root.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed = true;
}
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });

  await page.goto(`${base}/`);
  const row = page.locator(`tr.job[data-job-id="${finished}"]`);
  check(await row.count() === 1, "the overview lists the finished job");
  check((await row.locator("[role=progressbar]").getAttribute("aria-valuenow")) === "100",
    "its progress bar shows 100%");
  check((await row.locator("td.status").innerText()) === "Complete", "its status is Complete");
  const waitingRow = page.locator(`tr.job[data-job-id="${waiting}"]`);
  check((await waitingRow.locator("td.status").innerText()) === "Suspended",
    "the job awaiting confirmation is Suspended");
  await page.screenshot({ path: path.join(shots, "jobs.png"), fullPage: true });

  await waitingRow.locator("a").click();
  await page.waitForURL(`${base}/ui/jobs/${waiting}`);
  check(await page.locator("#confirm").count() === 1 && await page.locator("#cancel").count() === 1,
    "its page offers Confirm and Cancel");
  await page.screenshot({ path: path.join(shots, "job.png"), fullPage: true });
  await page.locator("#cancel").click();
  // The button's request, then a reload (or the page's own 2 s refresh) shows the new status.
  const cancelled = 'table.job-detail:is([data-status="Cancelled"], [data-status="Cancelling"])';
  const shown = await page.waitForSelector(cancelled, { timeout: 15000 }).then(() => true, () => false);
  const status = await page.locator("table.job-detail").getAttribute("data-status");
  check(shown, `after Cancel the page shows ${status}`);
  check(await page.locator("#cancel").count() === 0, "and no Cancel button any more");
  check(external.length === 0, `nothing fetched from elsewhere (${external.join(", ")})`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
