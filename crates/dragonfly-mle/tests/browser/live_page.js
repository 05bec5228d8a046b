// Drives the engine's live page in headless Chromium (tests/suite/live_page.rs runs it):
//   EDGES="from>to ..." UNKNOWN_EDGE="from>to" node live_page.js URL NODE_ID...
// Checks that every node id shows up, that every edge the engine counted (EDGES) is drawn
// and UNKNOWN_EDGE as an unknown (red) one, that the first node's total moves while events
// flow (the Rust side keeps sending), that the page fits a laptop screen's width, and that
// the dark theme follows the system's. Screenshots to SCREENSHOT and SCREENSHOT_DARK. Prints
// what it saw; exits non-zero on failure.
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
    // every edge the engine counted, drawn; the unknown tag's in red, to an "unknown" node
    const want = (process.env.EDGES || "").split(" ").filter(Boolean);
    const missing = [];
    for (let i = 0; i < 50; i++) {
      missing.length = 0;
      for (const e of want) {
        if (!(await page.$(`path[data-edge="${e}"]`))) missing.push(e);
      }
      if (!missing.length) break;
      await page.waitForTimeout(200);
    }
    if (missing.length) throw new Error("edges not drawn: " + missing.join(", "));
    const unknownEdge = process.env.UNKNOWN_EDGE;
    const unknownClass = unknownEdge
      ? await page.getAttribute(`path[data-edge="${unknownEdge}"]`, "class") : "unknown";
    const unknownTo = unknownEdge ? unknownEdge.split(">")[1] : "";
    const unknownNode = unknownEdge
      ? await page.getAttribute(`[data-node="${unknownTo}"]`, "class") : "unknown";
    // errors grouped by place: "N ×", the script and its line
    let group = "";
    for (let i = 0; i < 50 && process.env.ERROR_GROUP && !group.includes(process.env.ERROR_GROUP); i++) {
      group = (await page.textContent("#groups")) || "";
      if (!group.includes(process.env.ERROR_GROUP)) await page.waitForTimeout(200);
    }
    if (process.env.ERROR_GROUP && !/\d+ \u00d7analyzer\/http-scan\.lua:\d+/.test(group)) {
      throw new Error("no error group for " + process.env.ERROR_GROUP + ": " + group);
    }
    // the sparklines: the engine samples every 5 s; two samples make a first rate
    let history = 0;
    for (let i = 0; i < 80 && history < 1; i++) {
      history = Number(await page.getAttribute(`[data-node="${ids[0]}"]`, "data-history")) || 0;
      if (history < 1) await page.waitForTimeout(250);
    }
    if (history < 1) throw new Error("no history drawn after 20 s");
    // a 12-analyzer root fits a laptop screen's width
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    const rate = await page.textContent(`[data-node="${ids[0]}"] [data-k="rate"]`);
    // the first node is an input: it says what it is doing (or why it cannot)
    const state = await page.textContent(`[data-node="${ids[0]}"] [data-k="state"]`);
    const status = await page.textContent("#status");
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    // the same page in a dark room
    const dark = await browser.newPage({ viewport: { width: 1366, height: 900 }, colorScheme: "dark" });
    dark.on("pageerror", (e) => errors.push(String(e)));
    await dark.goto(url);
    await dark.waitForSelector(`[data-node="${ids[0]}"]`, { timeout: 20000 });
    await dark.waitForTimeout(1500);
    const background = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
    if (process.env.SCREENSHOT_DARK) await dark.screenshot({ path: process.env.SCREENSHOT_DARK, fullPage: true });
    console.log(JSON.stringify({ first, later, rate, state, status, edges: want.length, unknownClass,
                                 unknownNode, group: group.slice(0, 200), history, width, background, errors }));
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    if (!(first > 0 && later > first)) throw new Error(`numbers did not move: ${first} -> ${later}`);
    if (!/unknown/.test(unknownClass || "") || !/unknown/.test(unknownNode || "")) {
      throw new Error(`the unknown tag's edge is not shown as one: ${unknownClass}, ${unknownNode}`);
    }
    if (width > 1366) throw new Error(`the page is ${width}px wide: wider than a laptop screen`);
    const rgb = (background.match(/\d+/g) || []).slice(0, 3).map(Number);
    if (!(rgb.length === 3 && Math.max(...rgb) < 60)) throw new Error("not dark in a dark room: " + background);
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
