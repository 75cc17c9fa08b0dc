/**
 * What an account keeps in the store besides its predictions, for any node to read: its own
 * settings (A1111's sd_model_checkpoint) and a narrow glance at the predictions of its A1111
 * calls (what /sdapi/v1/progress and /interrupt read: never their inputs).
 */
import type { A1111Glance, A1111Mark, PredictionStore } from "../store/store.js";

export class AccountState {
  constructor(private readonly store: PredictionStore) {}

  /**
   * One of the account's own settings, kept in the store's settings table: every node sharing
   * the store sees it, and a restart keeps it.
   */
  setting(account: string, name: string): Promise<string | undefined> {
    return this.store.getSetting(settingKey(account, name));
  }

  setSetting(account: string, name: string, value: string): Promise<void> {
    return this.store.setSetting(settingKey(account, name), value);
  }

  /** The account's unfinished predictions made by A1111 calls, oldest first, with the ends of their logs. */
  openA1111Glances(account: string, limit: number): Promise<A1111Glance[]> {
    return this.store.openA1111Glances(account, limit);
  }

  /** The marks of the account's predictions made by A1111 calls since `createdFrom`, oldest first. */
  a1111MarksSince(account: string, createdFrom: string, limit: number): Promise<A1111Mark[]> {
    return this.store.a1111MarksSince(account, createdFrom, limit);
  }
}

/** The setting's name first: it holds no ":", so no account string makes another's key. */
function settingKey(account: string, name: string): string {
  return `account-setting:${name}:${account}`;
}
