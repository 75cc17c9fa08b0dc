/**
 * An account's AUTOMATIC1111 calls in flight, found in the store (so that any node answers
 * /progress, /interrupt and /skip for a call another node runs): each call's predictions carry
 * its mark (A1111Settings.call). A poll reads a narrow glance of them (never their inputs, which
 * hold an img2img call's pictures), bounded by CALL_SEARCH rows per query.
 */
import type { AccountState } from "../predictions/accounts.js";
import { parseMicros } from "../predictions/ids.js";
import type { PredictionRecord } from "../predictions/prediction.js";
import type { A1111Mark } from "../store/store.js";
import { MAX_IMAGES } from "./schemas.js";

/** One image of a call in flight, as the store has it. */
export interface Job {
  id: string;
  status: PredictionRecord["status"];
  step: number;
  steps: number;
}

/** One txt2img or img2img call of an account, found in the store by its predictions' call mark. */
export interface Call {
  id: string;
  timestamp: string;
  /** Epoch ms of its first prediction. */
  createdAt: number;
  /** Its images found, in order. */
  jobs: Job[];
  /** Its images not found: made after the page searched (so done) or not made yet. */
  missing: number;
  missingDone: boolean;
}

/** How many of the account's open predictions, and of those made since its oldest open call began, a poll reads. */
export const CALL_SEARCH = 2 * MAX_IMAGES;
/** The last step line of a prediction's logs (the progress bar: "| 3/20 ["). */
const STEP_LINE = /\|\s*(\d+)\/(\d+)\s*\[/g;

export function lastStep(logs: string): number {
  let step = 0;
  for (const m of logs.matchAll(STEP_LINE)) step = Number(m[1]);
  return step;
}

/** The stored form of a call's job timestamp (whole seconds, UTC): no image of the call is older. */
function callStart(timestamp: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(timestamp);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000000Z` : undefined;
}

/**
 * The account's calls with an image still waiting or running, oldest first, from the store: a
 * glance (never the inputs, which carry an img2img call's pictures) at its open predictions,
 * then at what it made since the oldest of their calls began, to count their finished images.
 */
export async function callsInFlight(accounts: AccountState, account: string): Promise<Call[]> {
  const open = await accounts.openA1111Glances(account, CALL_SEARCH);
  const starts = open.flatMap((g) => (g.a1111.call ? [callStart(g.a1111.call.timestamp) ?? g.createdAt] : []));
  // Stored timestamps sort as text: the first is the oldest.
  const [from] = starts.sort();
  if (from === undefined) return [];
  const since = await accounts.a1111MarksSince(account, from, CALL_SEARCH);
  // A full page may have left a call's last images out (finished: the open ones are all known); one not full has them all.
  const missingDone = since.length >= CALL_SEARCH;
  // The open ones last: with the ends of their logs.
  const found = new Map<string, A1111Mark & { logTail?: string }>([...since, ...open].map((g) => [g.id, g]));
  const openCalls = new Set(open.map((g) => g.a1111.call?.id));
  const calls = new Map<string, Call>();
  for (const g of [...found.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1))) {
    const mark = g.a1111.call;
    if (!mark || !openCalls.has(mark.id)) continue;
    let call = calls.get(mark.id);
    if (!call) {
      const createdAt = parseMicros(g.createdAt) / 1000;
      call = { id: mark.id, timestamp: mark.timestamp, createdAt, jobs: [], missing: mark.images, missingDone };
      calls.set(mark.id, call);
    }
    call.missing--;
    call.jobs.push({ id: g.id, status: g.status, step: lastStep(g.logTail ?? ""), steps: mark.steps });
  }
  return [...calls.values()].map((c) => ({ ...c, missing: Math.max(0, c.missing) }));
}
