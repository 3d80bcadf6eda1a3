/**
 * The newest runs, polled for the sidebar and the status bar: every second while
 * something runs, every 5 s while idle, every 15 s when no tab is looking, backing off
 * after failures.
 *
 * One tab polls for all the tabs of a browser on the same server: the tabs elect it with
 * a Web Lock and it shares what it reads on a BroadcastChannel, so 20 open tabs cost the
 * server what one does. A tab whose sidebar is filtered polls that page itself. Where
 * the browser has no Web Locks (a page not served over HTTPS or from localhost), every
 * tab polls on its own. Runs started from a tab are remembered there, so that their end
 * can be told.
 */
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { api, ApiError, IRun, IRunQuery } from './api';
import { FINAL, nextPollMs } from './model';

const DEFAULT_LIMIT = 50;
const LOOKING_MS = 20000;

interface IShared {
  kind: 'runs';
  runs: IRun[];
  active: IRun[];
  progress: { [id: string]: IRun['progress'] };
  error: string | null;
}

type Message = IShared | { kind: 'poke' } | { kind: 'looking' };

function isDefault(query: IRunQuery): boolean {
  return (
    !query.script?.length &&
    !query.status?.length &&
    (query.limit ?? DEFAULT_LIMIT) === DEFAULT_LIMIT &&
    !query.offset
  );
}

export class RunsModel {
  /** The runs the sidebar's query selects, newest first. */
  runs: IRun[] = [];
  /** Every run queued or running (the status bar's count). */
  active: IRun[] = [];
  error: string | null = null;
  /** The sidebar's filters and page size (``setQuery``). */
  query: IRunQuery = { limit: DEFAULT_LIMIT };
  /** The progress of running runs, by id (the history has no progress column). */
  progress: { [id: string]: IRun['progress'] } = {};
  /** Whether this tab polls for the others. */
  leader = false;
  private shared: IShared | null = null;
  private pinger: number;
  private timer: number | null = null;
  private failures = 0;
  private disposed = false;
  private lookedAt = 0;
  private started = new Set<string>();
  private channel: BroadcastChannel | null = null;
  private release: (() => void) | null = null;
  private changedSignal = new Signal<this, void>(this);
  private endedSignal = new Signal<this, IRun>(this);

  constructor() {
    document.addEventListener('visibilitychange', this.onVisibility);
    const name = `jupyter-scriptrun:${ServerConnection.makeSettings().baseUrl}`;
    if (typeof BroadcastChannel !== 'undefined' && navigator.locks) {
      this.channel = new BroadcastChannel(name);
      this.channel.onmessage = event => this.onMessage(event.data as Message);
      // Granted to one tab at a time, and to another when that tab closes.
      void navigator.locks.request(name, () => {
        if (this.disposed) {
          return;
        }
        this.leader = true;
        void this.refresh();
        return new Promise<void>(resolve => (this.release = resolve));
      });
      this.say({ kind: 'looking' });
    } else {
      this.leader = true;
    }
    // A tab in front keeps saying so: the leader may be a tab in the background.
    this.pinger = window.setInterval(() => {
      if (!document.hidden) {
        this.say({ kind: 'looking' });
      }
    }, LOOKING_MS / 2);
    void this.refresh();
  }

  /** Emitted after each poll (or each poll shared by another tab). */
  get changed(): ISignal<this, void> {
    return this.changedSignal;
  }

  /** Emitted when a run started from this window ends. */
  get ended(): ISignal<this, IRun> {
    return this.endedSignal;
  }

  /** Remember a run started here (its end is told), and poll soon. */
  track(run: IRun): void {
    this.started.add(run.id);
    this.runs = [run, ...this.runs.filter(r => r.id !== run.id)];
    this.changedSignal.emit();
    this.say({ kind: 'poke' });
    this.schedule(300);
  }

  /** Something changed (a run tab saw its run move on): poll soon, wherever the
   * polling tab is. */
  poke(): void {
    if (this.leader) {
      this.schedule(100);
    } else {
      this.say({ kind: 'poke' });
    }
  }

  /** Change the sidebar's filters or page size, and poll now. */
  setQuery(query: IRunQuery): void {
    this.query = query;
    void this.refresh();
  }

  /** Poll now: the leader polls for everyone, another tab only its filtered page. */
  async refresh(): Promise<void> {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.disposed) {
      return;
    }
    const own = !isDefault(this.query);
    try {
      if (this.leader) {
        const [runs, active] = await Promise.all([
          api.runs({ limit: DEFAULT_LIMIT }),
          api.runs({ status: ['queued', 'running'], limit: 500 })
        ]);
        const running = active.filter(r => r.status === 'running').slice(0, 10);
        const records = await Promise.all(running.map(r => api.run(r.id).catch(() => null)));
        const progress: IShared['progress'] = {};
        for (const record of records) {
          if (record) {
            progress[record.id] = record.progress;
          }
        }
        this.shared = { kind: 'runs', runs, active, progress, error: null };
        this.say(this.shared);
        this.active = active;
        this.progress = progress;
        this.runs = own ? await api.runs(this.query) : runs;
      } else if (own) {
        this.runs = await api.runs(this.query);
      }
      this.error = null;
      this.failures = 0;
      await this.tellEnded();
    } catch (error) {
      this.failures += 1;
      this.error = error instanceof ApiError ? error.message : String(error);
      if (this.leader) {
        const { runs, active, progress, error } = this;
        this.say({ kind: 'runs', runs, active, progress, error });
      }
    }
    this.changedSignal.emit();
    if (this.leader || own) {
      const busy = this.started.size > 0 || this.active.length > 0;
      const looked = !document.hidden || Date.now() - this.lookedAt < LOOKING_MS;
      this.schedule(nextPollMs(busy, !looked, this.failures));
    }
  }

  dispose(): void {
    this.disposed = true;
    document.removeEventListener('visibilitychange', this.onVisibility);
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    window.clearInterval(this.pinger);
    this.release?.();
    this.channel?.close();
    Signal.clearData(this);
  }

  private onMessage(message: Message): void {
    if (message.kind === 'poke') {
      if (this.leader) {
        this.schedule(300);
      }
    } else if (message.kind === 'looking') {
      const away = Date.now() - this.lookedAt > LOOKING_MS;
      this.lookedAt = Date.now();
      if (this.leader && this.shared) {
        this.say(this.shared); // what a new tab shows at once
      }
      if (this.leader && document.hidden && away) {
        this.schedule(300); // a tab came to the front after a while: fresh figures
      }
    } else if (message.kind === 'runs' && !this.leader) {
      this.active = message.active;
      this.progress = message.progress;
      this.error = message.error;
      if (isDefault(this.query)) {
        this.runs = message.runs;
      }
      void this.tellEnded().then(() => this.changedSignal.emit());
    }
  }

  private say(message: Message): void {
    this.channel?.postMessage(message);
  }

  /** Tell the end of runs started here that are no longer queued or running. */
  private async tellEnded(): Promise<void> {
    const active = new Set(this.active.map(r => r.id));
    for (const id of [...this.started]) {
      if (active.has(id)) {
        continue;
      }
      const run = this.runs.find(r => r.id === id) ?? (await api.run(id));
      if (FINAL.has(run.status)) {
        this.started.delete(id);
        this.endedSignal.emit(run);
      }
    }
  }

  private schedule(ms: number): void {
    if (this.disposed) {
      return;
    }
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    this.timer = window.setTimeout(() => void this.refresh(), ms);
  }

  private onVisibility = (): void => {
    if (!document.hidden) {
      this.say({ kind: 'looking' });
      void this.refresh();
    }
  };
}
