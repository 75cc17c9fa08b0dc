/**
 * What an account keeps in the store besides its predictions, for any node to read: its own
 * settings (A1111's sd_model_checkpoint) and a narrow glance at the predictions of its A1111
 * calls (what /sdapi/v1/progress and /interrupt read: never their inputs).
 */
import type { A1111Glance, A1111GlanceQuery, PredictionStore } from "../store/store.js";

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

  /** The account's predictions made by A1111 calls, oldest first, as the query narrows them. */
  a1111Glances(account: string, q: Omit<A1111GlanceQuery, "account">): Promise<A1111Glance[]> {
    return this.store.a1111Glances({ ...q, account });
  }
}

/** The setting's name first: it holds no ":", so no account string makes another's key. */
function settingKey(account: string, name: string): string {
  return `account-setting:${name}:${account}`;
}
