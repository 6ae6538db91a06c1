// A browser session on the agent's web UI for bench/ui.sh: logs in, keeps
// the dashboard open in one tab (live over server-sent events) and the
// Logs page following the agent's log in another, prints "ready", and
// stays until it is killed. Uses the browser test's playwright-core and
// Debian's Chromium.
//   UI_URL=http://127.0.0.1:PORT UI_PASSWORD=... node bench/ui-browser.js
"use strict";
const path = require("path");
const fs = require("fs");
const { chromium } = require(path.join(__dirname, "../crates/burrow/tests/browser/node_modules/playwright-core"));

const CHROMIUM = fs.existsSync("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : "/usr/bin/chromium";

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const dash = await context.newPage();
  await dash.goto(process.env.UI_URL + "/");
  await dash.fill("#password", process.env.UI_PASSWORD);
  await dash.click("#login-form button[type=submit]");
  await dash.waitForSelector("#links tbody tr td.state-connected");
  const logs = await context.newPage();
  await logs.goto(process.env.UI_URL + "/#/logs");
  await logs.waitForSelector("#page-logs:not([hidden])");
  await logs.check("#l-follow");
  await logs.waitForTimeout(500);
  console.log("ready");
  const stop = async () => { await browser.close(); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((e) => { console.error("FAILED: " + e.message); process.exit(1); });
