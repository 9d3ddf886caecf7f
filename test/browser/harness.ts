import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, expect } from "vitest";
import { DEFAULT_DASHBOARD_DIR } from "../../src/api/dashboard.js";
import type { Workers } from "../../src/worker/runner.js";
import { startTestApi, type TestApi, type TestApiOptions } from "../helpers/api.js";
import { startTestWorkers } from "../helpers/workers.js";

/** Debian's Chromium (`apt-get install chromium`); playwright-core downloads nothing. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots of every view, for people to look at (git-ignored; CI keeps them as artifacts). */
export const SCREENSHOT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../.ci/screenshots");

export const DESKTOP = { width: 1280, height: 860 };
export const PHONE = { width: 390, height: 844 };

/** Fails early, with the fix, when the dashboard was not built or Chromium is missing. */
export function checkPrerequisites(): void {
  if (!existsSync(path.join(DEFAULT_DASHBOARD_DIR, "index.html"))) throw new Error("the dashboard is not built: run `npm run build:ui` (npm install runs it)");
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
}

/** Headless Chromium. --no-sandbox because tests run as root in CI, where Chromium's sandbox cannot start. */
export async function launchBrowser(): Promise<Browser> {
  checkPrerequisites();
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}

/**
 * A page that records every console error and uncaught exception. `allow` lists messages a test
 * provokes on purpose (Chromium logs each refused connection and each 401 as a console error).
 */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Console errors and page errors not allowed by the test. */
  errors: string[];
  /** Permit console errors matching this while the test provokes them. */
  allow(pattern: RegExp): void;
  close(): Promise<void>;
}

export async function openPage(browser: Browser, options: { viewport?: { width: number; height: number }; colorScheme?: "light" | "dark" } = {}): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: options.viewport ?? DESKTOP, colorScheme: options.colorScheme ?? "light", acceptDownloads: true });
  const page = await context.newPage();
  // Generous: CI runs these beside the rest of the suite on two shared cores.
  page.setDefaultTimeout(30_000);
  const errors: string[] = [];
  const allowed: RegExp[] = [];
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = `${msg.text()} (${msg.location().url})`;
    if (!allowed.some((a) => a.test(text))) errors.push(text);
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  return { page, context, errors, allow: (p) => allowed.push(p), close: () => context.close() };
}

/** Asserts that the page logged no console error. */
export function expectNoConsoleErrors(watched: WatchedPage): void {
  expect(watched.errors, "browser console errors").toEqual([]);
}

/** Saves a full-page screenshot as .ci/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

/**
 * Screenshots one view on a phone-sized viewport too (a page of its own, so the test's page keeps
 * its state); it must log no console error either.
 */
export async function screenshotPhone(
  browser: Browser,
  url: string,
  name: string,
  ready: (page: Page) => Promise<unknown>,
  options: { colorScheme?: "light" | "dark"; allow?: RegExp } = {},
): Promise<void> {
  const phone = await openPage(browser, { viewport: PHONE, colorScheme: options.colorScheme });
  if (options.allow) phone.allow(options.allow);
  try {
    await phone.page.goto(url);
    await ready(phone.page);
    await screenshot(phone.page, name);
    expectNoConsoleErrors(phone);
  } finally {
    await phone.close();
  }
}

/**
 * What a dashboard test file shares, set up by useDashboardSuite's hooks: a server with workers and a
 * browser for the file, and for each test a fresh page that must log no console error.
 */
export interface DashboardSuite {
  api: TestApi;
  workers: Workers;
  browser: Browser;
  /** This test's page and its console watch. */
  w: WatchedPage;
  page: Page;
}

/** Registers the hooks of a dashboard test file (see DashboardSuite); `api` configures its server (e.g. tokens), `workers` its workers. */
export function useDashboardSuite(options: { api?: TestApiOptions; workers?: Parameters<typeof startTestWorkers>[1] } = {}): DashboardSuite {
  const suite = {} as DashboardSuite;
  beforeAll(async () => {
    [suite.api, suite.browser] = await Promise.all([startTestApi(options.api), launchBrowser()]);
    suite.workers = await startTestWorkers(suite.api.database, options.workers);
  });
  afterAll(async () => {
    await suite.browser?.close();
    await suite.workers?.stop();
    await suite.api?.close();
  });
  beforeEach(async () => {
    suite.w = await openPage(suite.browser);
    suite.page = suite.w.page;
  });
  afterEach(async () => {
    expectNoConsoleErrors(suite.w);
    await suite.w.close();
  });
  return suite;
}


/** Signs in through the dashboard's token prompt and waits until the header says who it acts as ("ci · operator"). */
export async function signIn(page: Page, baseUrl: string, token: string, identity: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  const dialog = page.getByRole("dialog", { name: "API token required" });
  await dialog.getByLabel("Token").fill(token);
  await dialog.getByRole("button", { name: "Continue" }).click();
  await dialog.waitFor({ state: "detached" });
  await page.getByTestId("identity").getByText(identity).waitFor();
}
