// The agent's web UI in a real browser, as a user clicks through it:
// Debian's Chromium through playwright-core, or Debian's Firefox ESR
// through puppeteer-core (WebDriver BiDi). Neither downloads a browser.
// Run by crates/burrow/tests/ui.rs with:
//   BROWSER      chromium (default) or firefox
//   UI_URL       the UI (https://127.0.0.1:PORT)
//   EDGE_PORT    the gateway's HTTPS edge on 127.0.0.1
//   SERVICE_ONE, SERVICE_TWO  ports of two web services on 127.0.0.1
//   SHOTS        where screenshots go
//   SESSION_SECONDS  the UI's session lifetime
// Prints "ok" last; any failure throws (exit code 1) with what was wrong.
"use strict";
const https = require("https");
const fs = require("fs");
const path = require("path");

const UI = process.env.UI_URL;
const EDGE_PORT = Number(process.env.EDGE_PORT);
const SHOTS = process.env.SHOTS;
const SESSION_SECONDS = Number(process.env.SESSION_SECONDS);
const BROWSER = process.env.BROWSER || "chromium";
const CHROMIUM = fs.existsSync("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : "/usr/bin/chromium";
const FIREFOX = "/usr/bin/firefox-esr";
const TIMEOUT = 15000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

function edge(host) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port: EDGE_PORT, path: "/", servername: host, headers: { Host: host }, rejectUnauthorized: false, timeout: 10000 }, (res) => {
      let body = "";
      res.on("data", (c) => { body += c; });
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("edge timed out")));
    req.end();
  });
}

function check(cond, what) { if (!cond) throw new Error(what); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, fn) {
  const until = Date.now() + TIMEOUT;
  let last;
  while (Date.now() < until) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await sleep(200);
  }
  throw new Error("never: " + what + (last ? " (" + last.message + ")" : ""));
}

// The few things the steps do, over either driver. Selectors are CSS only.
async function open() {
  if (BROWSER === "firefox") {
    const puppeteer = require("puppeteer-core");
    const browser = await puppeteer.launch({ browser: "firefox", executablePath: FIREFOX, headless: true, acceptInsecureCerts: true });
    const page = await browser.newPage();
    await page.setViewport(DESKTOP);
    page.setDefaultTimeout(TIMEOUT);
    page.on("dialog", (d) => d.accept());
    return {
      page, close: () => browser.close(),
      goto: (url) => page.goto(url, { waitUntil: "load" }),
      visible: (sel) => page.waitForSelector(sel, { visible: true }),
      until: (fn) => page.waitForFunction(fn, { timeout: TIMEOUT }),
      fill: (sel, v) => page.$eval(sel, (e, v) => { e.value = v; e.dispatchEvent(new Event("input", { bubbles: true })); }, v),
      press: async (sel, key) => { await page.focus(sel); await page.keyboard.press(key); },
      click: (sel) => page.click(sel),
      select: (sel, v) => page.select(sel, v),
      check: async (sel) => { if (!(await page.$eval(sel, (e) => e.checked))) await page.click(sel); },
      value: (sel) => page.$eval(sel, (e) => e.value),
      text: (sel) => page.$eval(sel, (e) => e.textContent),
      texts: (sel) => page.$$eval(sel, (l) => l.map((e) => e.textContent)),
      count: (sel) => page.$$eval(sel, (l) => l.length),
      evaluate: (fn) => page.evaluate(fn),
      cookies: () => (browser.cookies ? browser.cookies() : page.cookies()),
      focused: () => page.evaluate(() => document.activeElement.id),
      viewport: (size) => page.setViewport(size),
      screenshot: (file) => page.screenshot({ path: file, fullPage: true }),
    };
  }
  const { chromium } = require("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("dialog", (d) => d.accept());
  return {
    page, close: () => browser.close(),
    goto: (url) => page.goto(url, { waitUntil: "load" }),
    visible: (sel) => page.waitForSelector(sel),
    until: (fn) => page.waitForFunction(fn),
    fill: (sel, v) => page.fill(sel, v),
    press: (sel, key) => page.press(sel, key),
    click: (sel) => page.click(sel),
    select: (sel, v) => page.selectOption(sel, v),
    check: (sel) => page.check(sel),
    value: (sel) => page.inputValue(sel),
    text: (sel) => page.textContent(sel),
    texts: (sel) => page.$$eval(sel, (l) => l.map((e) => e.textContent)),
    count: (sel) => page.locator(sel).count(),
    evaluate: (fn) => page.evaluate(fn),
    cookies: () => context.cookies(),
    focused: () => page.evaluate(() => document.activeElement.id),
    viewport: (size) => page.setViewportSize(size),
    screenshot: (file) => page.screenshot({ path: file, fullPage: true }),
  };
}

async function shoot(u, name) {
  for (const [label, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await u.viewport(size);
    await u.screenshot(path.join(SHOTS, name + "-" + label + ".png"));
  }
  await u.viewport(DESKTOP);
}

(async () => {
  const u = await open();
  try {
    await u.goto(UI + "/");
    await u.visible("#login:not([hidden])");
    await shoot(u, "login");

    // Wrong password.
    await u.fill("#password", "wrong");
    await u.press("#password", "Enter");
    await u.until(() => document.querySelector("#login-error").textContent.includes("wrong password"));

    // Log in; the dashboard shows both links connected, live.
    await u.fill("#password", "hunter2");
    await u.click("#login-form button[type=submit]");
    await u.visible("#nav:not([hidden])");
    await u.until(() => document.querySelectorAll("#links tbody tr td.state-connected").length === 2);
    const cookies = await u.cookies();
    const session = cookies.find((c) => c.name === "burrow_session");
    check(session && session.httpOnly && session.secure && session.sameSite === "Strict", "cookie flags: " + JSON.stringify(session));
    await shoot(u, "dashboard");

    // Create a mapping; a bad URL is named under its field first.
    await u.click("nav a[href='#/mappings']");
    await u.click("#map-new");
    await u.fill("#m-hostname", "ui.tunnel.test");
    await u.fill("#m-target", "ftp://nowhere");
    await u.click("#map-form button[type=submit]");
    await u.until(() => document.querySelector("#e-target").textContent.includes("http://HOST:PORT"));
    await u.fill("#m-target", "http://127.0.0.1:" + process.env.SERVICE_ONE);
    await u.click("#map-form button[type=submit]");
    await u.until(() => [...document.querySelectorAll("#mappings tbody tr")].some((tr) => tr.textContent.includes("published")));
    await eventually("the edge serves the new mapping", async () => (await edge("ui.tunnel.test")).body.startsWith("service=one "));
    await shoot(u, "mappings");

    // Edit: point it at the other service.
    await u.click("button[aria-label='Edit ui.tunnel.test']");
    await u.fill("#m-target", "http://127.0.0.1:" + process.env.SERVICE_TWO);
    await u.click("#map-form button[type=submit]");
    await eventually("the edge serves the edited mapping", async () => (await edge("ui.tunnel.test")).body.startsWith("service=two "));

    // Inspect it: the same request through the edge and straight from
    // the service; the service names a different Host on each side.
    await u.click("button[aria-label='Inspect ui.tunnel.test']");
    await u.visible("#page-inspect:not([hidden])");
    // The page shows at once; its host list fills in when the mappings
    // arrive.
    await eventually("the inspector opens on the mapping", async () => (await u.value("#i-host")) === "ui.tunnel.test");
    await u.fill("#i-path", "no-slash");
    await u.click("#inspect-form button[type=submit]");
    await u.until(() => document.querySelector("#e-path").textContent.includes("start with /"));
    await u.fill("#i-path", "/inspected");
    await u.click("#inspect-form button[type=submit]");
    await u.visible("#inspect-result:not([hidden])");
    const statuses = await u.texts("#inspect-summary tbody tr:nth-child(2) td");
    check(statuses[1] === "200" && statuses[2] === "200", "both sides answer 200: " + statuses);
    const body = await u.text("#inspect-body-edge");
    check(body.includes("service=two path=/inspected host=ui.tunnel.test"), "the edge side's body: " + body);
    check((await u.text("#inspect-body-diff")).startsWith("≠ The bodies differ"), "the bodies are marked as differing");
    check((await u.count("#inspect-headers tbody tr.diff")) > 0, "differing headers are marked");
    await shoot(u, "inspect");

    // Traffic shows the requests.
    await u.click("nav a[href='#/traffic']");
    await u.fill("#t-host", "ui.tunnel.test");
    await eventually("traffic lists the requests", async () => {
      await u.click("#traffic-form button[type=submit]");
      await sleep(300);
      return (await u.count("#traffic tbody tr")) > 0;
    });
    await shoot(u, "traffic");

    // Follow the gateway's log lines about this agent while a change is made.
    await u.click("nav a[href='#/logs']");
    await u.select("#l-source", "gateway");
    await sleep(500);
    // Requests flow through the edge meanwhile.
    const load = Promise.all([...Array(40)].map(() => edge("ui.tunnel.test").catch(() => null)));
    await u.evaluate(async () => {
      const s = await (await fetch("/api/session")).json();
      await fetch("/api/mappings/ui.tunnel.test", { method: "PUT", headers: { "Content-Type": "application/json", "X-CSRF-Token": s.csrf }, body: JSON.stringify({ hostname: "ui.tunnel.test", target: "http://127.0.0.1:1", enabled: true }) });
    });
    await u.until(() => document.querySelector("#log-lines").textContent.includes("route published"));
    // Each answered: 200 before the change, 502 (port 1) after it.
    check((await load).every((r) => r && (r.status === 200 || r.status === 502)), "the edge answered every request while the log was followed");
    await shoot(u, "logs");

    // Disable, then delete with confirmation.
    await u.click("nav a[href='#/mappings']");
    await u.click("button[aria-label='Disable ui.tunnel.test']");
    await u.until(() => [...document.querySelectorAll("#mappings tbody tr")].some((tr) => tr.textContent.includes("disabled")));
    await eventually("a disabled mapping is not served", async () => (await edge("ui.tunnel.test")).status === 404);
    await u.click("button[aria-label='Delete ui.tunnel.test']");
    await u.until(() => document.querySelectorAll("#mappings tbody tr").length === 0);

    // Settings and Caddy pages render.
    await u.click("nav a[href='#/settings']");
    await u.until(() => document.querySelector("#landing-html").value.length > 0);
    await shoot(u, "settings");
    await u.click("nav a[href='#/caddy']");
    await u.until(() => document.querySelector("#caddy-message").textContent.length > 0);
    await shoot(u, "caddy");

    // Keyboard: the login field and nav links are reachable by Tab.
    await u.click("#logout");
    await u.visible("#login:not([hidden])");
    check((await u.focused()) === "password", "focus goes to the password field");
    check(await u.evaluate(() => getComputedStyle(document.querySelector("#nav")).display === "none"), "the page links are hidden while logged out");

    // A session expires.
    await u.fill("#password", "hunter2");
    await u.click("#login-form button[type=submit]");
    await u.visible("#nav:not([hidden])");
    await sleep((SESSION_SECONDS + 1) * 1000);
    await u.click("nav a[href='#/mappings']");
    await u.until(() => document.querySelector("#login-error").textContent.includes("session ended"));

    // Lockout after repeated failures, with when to try again.
    for (let i = 0; i < 5; i++) {
      await u.fill("#password", "guess" + i);
      await u.click("#login-form button[type=submit]");
      await sleep(150);
    }
    await u.until(() => document.querySelector("#login-error").textContent.includes("try again in 1 minute"));
    await shoot(u, "lockout");
    console.log("ok");
  } catch (e) {
    try { await u.screenshot(path.join(SHOTS, "failure.png")); } catch (_) { /* nothing more to keep */ }
    console.error("FAILED: " + e.message);
    process.exitCode = 1;
  } finally {
    await u.close();
  }
})();
