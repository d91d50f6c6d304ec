/**
 * Saving a target's memory after each probe without rewriting the state file every second: what
 * decides the next run (the policy's state, incidents, pools, where the error log was read) is
 * saved as soon as it changes; what only counts (probe counters, the last probe) at most every
 * {@link COUNTERS_SAVE_MS}, and when the loop ends. A watch SIGKILLed loses at most that much of
 * its counting, never a decision.
 */
import type { Clock } from "../shared/deps.ts";
import type { Memory, StateStore } from "./state.ts";

/** How often the counters alone are written to the state file, at most. */
export const COUNTERS_SAVE_MS = 15_000;

/**
 * What of a memory decides something: all of it but the counting. The run of healthy probes
 * decides only while an incident waits to be over or a restart budget to be whole again; else it
 * only grows, and the failure that ends it sets it back to 0 (saved, with the failure).
 */
function decisive({ counters: _c, lastProbe: _p, state, ...rest }: Memory): string {
  const counted = state.incident !== null || state.rearmWhenHealthy;
  return JSON.stringify({ ...rest, state: counted ? state : { ...state, successes: null } });
}

/** One target's saves, paced. */
export class PacedSaves {
  private saved: string | null = null;
  private savedAt = -Infinity;
  private pending: Memory | null = null;

  constructor(private readonly store: StateStore, private readonly clock: Clock) {}

  /** Saves `memory` now if a decision changed or the counters are due; else keeps it for later. */
  async save(memory: Memory): Promise<void> {
    const key = decisive(memory);
    if (key === this.saved && this.clock.now() - this.savedAt < COUNTERS_SAVE_MS) {
      this.pending = memory;
      return;
    }
    await this.write(memory, key);
  }

  /** Saves what is kept, if anything: at the end of a run or a watch. */
  async flush(): Promise<void> {
    if (this.pending !== null) await this.write(this.pending, decisive(this.pending));
  }

  private async write(memory: Memory, key: string): Promise<void> {
    this.pending = null;
    await this.store.save(memory);
    this.saved = key;
    this.savedAt = this.clock.now();
  }
}
