/** The real webhook POST: JSON, one fresh connection, redirects not followed. */
import type { WebhookPost } from "../shared/deps.ts";

/** POSTs `json` to `url`; resolves to the HTTP status (the body is read and dropped). */
export const directWebhookPost: WebhookPost = async (url, json, signal) => {
  using client = Deno.createHttpClient({});
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: json,
    client,
    signal,
    redirect: "manual",
  });
  await response.body?.cancel();
  return response.status;
};
