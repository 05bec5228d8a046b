// Drives the engine's live page in headless Chromium (tests/live_page.rs runs it):
//   node live_page.js URL NODE_ID... 
// Checks that every node id shows up, and that the first one's total moves while events
// flow (the Rust side keeps sending). Prints what it saw; exits non-zero on failure.
"use strict";
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

async function main() {
  const [url, ...ids] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
    await page.goto(url);
    for (const id of ids) {
      await page.waitForSelector(`[data-node="${id}"]`, { timeout: 20000 });
    }
    const total = async () => {
      const t = await page.textContent(`[data-node="${ids[0]}"] [data-k="total"]`);
      return Number((t || "").replace(/[^0-9]/g, "")) || 0;
    };
    // wait for a first number, then for it to move
    let first = 0;
    for (let i = 0; i < 100 && first === 0; i++) {
      first = await total();
      if (first === 0) await page.waitForTimeout(200);
    }
    let later = first;
    for (let i = 0; i < 100 && later <= first; i++) {
      await page.waitForTimeout(200);
      later = await total();
    }
    const rate = await page.textContent(`[data-node="${ids[0]}"] [data-k="rate"]`);
    // the first node is an input: it says what it is doing (or why it cannot)
    const state = await page.textContent(`[data-node="${ids[0]}"] [data-k="state"]`);
    const status = await page.textContent("#status");
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    console.log(JSON.stringify({ first, later, rate, state, status, errors }));
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    if (!(first > 0 && later > first)) throw new Error(`numbers did not move: ${first} -> ${later}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
