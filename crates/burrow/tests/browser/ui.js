// The agent's web UI in Debian's Chromium, as a user clicks through it.
// Run by crates/burrow/tests/ui.rs with:
//   UI_URL       the UI (https://127.0.0.1:PORT)
//   EDGE_PORT    the gateway's HTTPS edge on 127.0.0.1
//   SERVICE_ONE, SERVICE_TWO  ports of two web services on 127.0.0.1
//   SHOTS        where screenshots go
//   SESSION_SECONDS  the UI's session lifetime
// Prints "ok" last; any failure throws (exit code 1) with what was wrong.
"use strict";
const { chromium } = require("playwright-core");
const https = require("https");
const fs = require("fs");
const path = require("path");

const UI = process.env.UI_URL;
const EDGE_PORT = Number(process.env.EDGE_PORT);
const SHOTS = process.env.SHOTS;
const SESSION_SECONDS = Number(process.env.SESSION_SECONDS);
const CHROMIUM = fs.existsSync("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : "/usr/bin/chromium";

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

async function eventually(what, fn) {
  const until = Date.now() + 15000;
  let last;
  while (Date.now() < until) {
    try { if (await fn()) return; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("never: " + what + (last ? " (" + last.message + ")" : ""));
}

async function shoot(page, name) {
  for (const [label, size] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: path.join(SHOTS, name + "-" + label + ".png"), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}

(async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("dialog", (d) => d.accept());
  try {
    await page.goto(UI + "/", { waitUntil: "load" });
    await page.waitForSelector("#login:not([hidden])");
    await shoot(page, "login");

    // Wrong password.
    await page.fill("#password", "wrong");
    await page.press("#password", "Enter");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("wrong password"));

    // Log in; the dashboard shows both links connected, live.
    await page.fill("#password", "hunter2");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#nav:not([hidden])");
    await page.waitForFunction(() => document.querySelectorAll("#links tbody tr td.state-connected").length === 2);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "burrow_session");
    check(session && session.httpOnly && session.secure && session.sameSite === "Strict", "cookie flags: " + JSON.stringify(session));
    await shoot(page, "dashboard");

    // Create a mapping; a bad URL is named under its field first.
    await page.click("nav a[href='#/mappings']");
    await page.click("#map-new");
    await page.fill("#m-hostname", "ui.tunnel.test");
    await page.fill("#m-target", "ftp://nowhere");
    await page.click("#map-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#e-target").textContent.includes("http://HOST:PORT"));
    await page.fill("#m-target", "http://127.0.0.1:" + process.env.SERVICE_ONE);
    await page.click("#map-form button[type=submit]");
    await page.waitForSelector("#mappings tbody tr >> text=published");
    await eventually("the edge serves the new mapping", async () => (await edge("ui.tunnel.test")).body.startsWith("service=one "));
    await shoot(page, "mappings");

    // Edit: point it at the other service.
    await page.click("button[aria-label='Edit ui.tunnel.test']");
    await page.fill("#m-target", "http://127.0.0.1:" + process.env.SERVICE_TWO);
    await page.click("#map-form button[type=submit]");
    await eventually("the edge serves the edited mapping", async () => (await edge("ui.tunnel.test")).body.startsWith("service=two "));

    // Inspect it: the same request through the edge and straight from
    // the service; the service names a different Host on each side.
    await page.click("button[aria-label='Inspect ui.tunnel.test']");
    await page.waitForSelector("#page-inspect:not([hidden])");
    check((await page.inputValue("#i-host")) === "ui.tunnel.test", "the inspector opens on the mapping");
    await page.fill("#i-path", "no-slash");
    await page.click("#inspect-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#e-path").textContent.includes("start with /"));
    await page.fill("#i-path", "/inspected");
    await page.click("#inspect-form button[type=submit]");
    await page.waitForSelector("#inspect-result:not([hidden])");
    const statuses = await page.$$eval("#inspect-summary tbody tr:nth-child(2) td", (t) => t.map((c) => c.textContent));
    check(statuses[1] === "200" && statuses[2] === "200", "both sides answer 200: " + statuses);
    const body = await page.textContent("#inspect-body-edge");
    check(body.includes("service=two path=/inspected host=ui.tunnel.test"), "the edge side's body: " + body);
    check((await page.textContent("#inspect-body-diff")).startsWith("≠ The bodies differ"), "the bodies are marked as differing");
    check((await page.locator("#inspect-headers tbody tr.diff").count()) > 0, "differing headers are marked");
    await shoot(page, "inspect");

    // Traffic shows the requests.
    await page.click("nav a[href='#/traffic']");
    await page.fill("#t-host", "ui.tunnel.test");
    await eventually("traffic lists the requests", async () => {
      await page.click("#traffic-form button[type=submit]");
      await page.waitForTimeout(300);
      return (await page.locator("#traffic tbody tr").count()) > 0;
    });
    await shoot(page, "traffic");

    // Follow the gateway's log lines about this agent while a change is made.
    await page.click("nav a[href='#/logs']");
    await page.selectOption("#l-source", "gateway");
    await page.waitForTimeout(500);
    await page.evaluate(async () => {
      const s = await (await fetch("/api/session")).json();
      await fetch("/api/mappings/ui.tunnel.test", { method: "PUT", headers: { "Content-Type": "application/json", "X-CSRF-Token": s.csrf }, body: JSON.stringify({ hostname: "ui.tunnel.test", target: "http://127.0.0.1:1", enabled: true }) });
    });
    await page.waitForFunction(() => document.querySelector("#log-lines").textContent.includes("route published"));
    await shoot(page, "logs");

    // Disable, then delete with confirmation.
    await page.click("nav a[href='#/mappings']");
    await page.click("button[aria-label='Disable ui.tunnel.test']");
    await page.waitForSelector("#mappings tbody tr >> text=disabled");
    await eventually("a disabled mapping is not served", async () => (await edge("ui.tunnel.test")).status === 404);
    await page.click("button[aria-label='Delete ui.tunnel.test']");
    await page.waitForFunction(() => document.querySelectorAll("#mappings tbody tr").length === 0);

    // Settings and Caddy pages render.
    await page.click("nav a[href='#/settings']");
    await page.waitForFunction(() => document.querySelector("#landing-html").value.length > 0);
    await shoot(page, "settings");
    await page.click("nav a[href='#/caddy']");
    await page.waitForFunction(() => document.querySelector("#caddy-message").textContent.length > 0);
    await shoot(page, "caddy");

    // Keyboard: the login field and nav links are reachable by Tab.
    await page.click("#logout");
    await page.waitForSelector("#login:not([hidden])");
    check((await page.evaluate(() => document.activeElement.id)) === "password", "focus goes to the password field");

    // A session expires.
    await page.fill("#password", "hunter2");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#nav:not([hidden])");
    await page.waitForTimeout((SESSION_SECONDS + 1) * 1000);
    await page.click("nav a[href='#/mappings']");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("session ended"));

    // Lockout after repeated failures, with when to try again.
    for (let i = 0; i < 5; i++) {
      await page.fill("#password", "guess" + i);
      await page.click("#login-form button[type=submit]");
      await page.waitForTimeout(150);
    }
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.includes("try again in 1 minute"));
    await shoot(page, "lockout");
    console.log("ok");
  } catch (e) {
    try { await page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }); } catch (_) { /* nothing more to keep */ }
    console.error("FAILED: " + e.message);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
