/**
 * The web console at `/` on HTTP_PORT: three static files embedded in the recorder by text imports
 * (part of the module graph, so `deno compile` carries them and no read permission is needed). The
 * shell holds no data and is served without the token, so that it can ask for it; every call it
 * makes for data goes through the API and needs the token like any other client.
 */
import html from "./console/index.html" with { type: "text" };
import script from "./console/console.js" with { type: "text" };
import style from "./console/console.css" with { type: "text" };

const ASSETS: Record<string, { body: string; type: string }> = {
  "/": { body: html, type: "text/html; charset=utf-8" },
  "/console.js": { body: script, type: "text/javascript; charset=utf-8" },
  "/console.css": { body: style, type: "text/css; charset=utf-8" },
};

/** The console's file for a GET of `path`, or null when `path` is not one of them. */
export function consoleAsset(method: string, path: string): Response | null {
  const asset = ASSETS[path];
  if (!asset || (method !== "GET" && method !== "HEAD")) return null;
  return new Response(method === "HEAD" ? null : asset.body, {
    headers: {
      "content-type": asset.type,
      "cache-control": "no-cache",
      "content-security-policy":
        "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; style-src 'self'",
      "x-content-type-options": "nosniff",
    },
  });
}
