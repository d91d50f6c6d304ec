/**
 * Whether watch mode's probe loops make progress: each loop beats before and after every step
 * (and while it waits for its lock), and one silent for too long is hung. systemd's watchdog and
 * the dead-man's switch both stop saying "alive" then, each with its own patience.
 */
import type { Target } from "../config/settings.ts";
import type { TargetWatch } from "./target.ts";

/** A target loop's last sign of life: when, and its watch (null while it waits for its lock). */
export interface Beat {
  readonly at: number;
  readonly watch: TargetWatch | null;
}

/**
 * The first of `targets` whose loop has been silent at `now` for longer than `limitMs(target)`,
 * or null. A loop restarting php-fpm is slow, not hung: each of its commands has a deadline.
 */
export function silentLoop(
  targets: readonly Target[],
  beats: ReadonlyMap<string, Beat>,
  now: number,
  limitMs: (target: Target) => number,
): Target | null {
  return targets.find((t) => {
    const beat = beats.get(t.name);
    return beat !== undefined && !beat.watch?.responder.restarting &&
      now - beat.at > limitMs(t);
  }) ?? null;
}
