/**
 * The shell every page shares: head, site header with the API token control, and the dialog
 * where a token is pasted once and kept in the browser (localStorage, never sent to anyone but
 * this server). Light or dark follows the system setting.
 */
import { type Html, html } from "./html.js";

export interface PageOptions {
  title: string;
  main: Html;
  /** Browser modules under /static to load (the page's entry point). */
  scripts: readonly string[];
}

export function page(opts: PageOptions): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light dark">
<title>${opts.title} · sdserve</title>
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/sdserve.css">
${opts.scripts.map((s) => html`<script type="module" src="/static/${s}"></script>\n`)}</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site">
<a class="brand" href="/"><img src="/static/icon.svg" alt="" width="24" height="24"> sdserve</a>
<nav class="site-nav" aria-label="Site"><a href="/">Playground</a></nav>
<button type="button" class="token-button" data-action="open-token" hidden>API token</button>
</header>
<main id="main">
${opts.main}
</main>
<dialog id="token-dialog" aria-labelledby="token-dialog-title">
<form id="token-form" method="dialog">
<h2 id="token-dialog-title">API token</h2>
<p>Running, cancelling and listing predictions take one of this server's API tokens
(<code>SDSERVE_API_TOKENS</code>, or the one <code>sdserve serve</code> printed on its first start).
It is kept in this browser only and sent to this server as <code>Authorization: Bearer</code>.</p>
<label for="token-input">Token</label>
<input id="token-input" name="token" type="password" autocomplete="off" spellcheck="false" required aria-describedby="token-error">
<p class="field-error" id="token-error" role="alert" hidden></p>
<div class="buttons">
<button type="submit" class="primary">Save</button>
<button type="button" data-action="forget-token">Forget</button>
<button type="button" data-action="close-token">Close</button>
</div>
</form>
</dialog>
</body>
</html>
`.text;
}
