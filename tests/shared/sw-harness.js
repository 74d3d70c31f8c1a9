// A test service worker's frame (tests/e2e/sw-entry.test.mjs): it takes
// control at once, and answers each message from the page with what
// `test(data)` returns, or the error it threw, as `{ error }`.
export function answerMessages(test) {
  self.addEventListener("install", () => self.skipWaiting());
  self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
  self.addEventListener("message", (event) => {
    event.waitUntil(
      (async () => {
        let out;
        try {
          out = await test(event.data);
        } catch (e) {
          out = { error: String(e?.stack ?? e) };
        }
        event.source.postMessage(out);
      })(),
    );
  });
}
