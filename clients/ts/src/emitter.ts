/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

// Listeners are stored untyped; `on` and `emit` keep the types.
type Listener = (...args: never[]) => void;

/** A minimal typed event emitter (no Node or DOM dependency). */
export class Emitter<Events extends { [K in keyof Events]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Set<Listener>>();

  on<K extends keyof Events>(name: K, listener: (...args: Events[K]) => void): Unsubscribe {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as unknown as Listener);
    return () => {
      set.delete(listener as unknown as Listener);
    };
  }

  once<K extends keyof Events>(name: K, listener: (...args: Events[K]) => void): Unsubscribe {
    const off = this.on(name, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  listenerCount(name: keyof Events): number {
    return this.listeners.get(name)?.size ?? 0;
  }

  emit<K extends keyof Events>(name: K, ...args: Events[K]): void {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (...a: unknown[]) => void)(...args);
      } catch (err) {
        // A failing listener must not break the client's frame handling; report it the way
        // EventTarget does (an uncaught error on its own turn).
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
