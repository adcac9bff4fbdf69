// What the browser tests share: Debian's headless Chromium, launched as Playwright drives it, and a check that
// fails the run with its reason.

import { chromium } from "playwright-core";

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/// The environment variable, which must be set.
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // As root on a closed network: no sandbox, and no calls home.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}
