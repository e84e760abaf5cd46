/**
 * How the console reaches the user. On a terminal, the screen is redrawn in place (log-update)
 * at most every 100 ms; elsewhere (CI, pipes) each event is one timestamped line.
 */
import { createLogUpdate } from 'log-update';
import type { ConsoleEvent, ConsoleModel } from './model.ts';
import { eventLine, renderScreen } from './render.ts';

export interface ConsoleDriver {
  /** Something worth a line happened (the terminal driver shows it in the screen instead). */
  event(event: ConsoleEvent): void;
  /** The model changed: redraw (throttled). */
  changed(): void;
  /** Static text that scrolls above the live screen (the banner). */
  print(text: string): void;
  /** Draws the last frame and leaves it on screen. */
  stop(): void;
}

/** Draws `renderScreen(model)` in place on a terminal, at most every `intervalMs`. */
export function terminalDriver(
  model: ConsoleModel,
  stream: NodeJS.WriteStream = process.stdout,
  intervalMs = 100,
): ConsoleDriver {
  const log = createLogUpdate(stream, { showCursor: true });
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const draw = () => {
    timer = undefined;
    const rows = stream.rows || 40;
    const instances = model.instances.filter((i) => i.environment === model.selectedEnvironment);
    const maxRollouts = Math.max(2, Math.min(6, Math.floor((rows - 16 - instances.length) / 2)));
    log(renderScreen(model, { width: (stream.columns || 120) - 1, maxRollouts }));
  };
  // The packaging line counts seconds even when nothing else changes.
  const ticker = setInterval(() => {
    if (model.packaging && model.packaging.doneAt === undefined) draw();
  }, 1000);
  ticker.unref();
  return {
    event() {},
    changed() {
      if (stopped || timer) return;
      timer = setTimeout(draw, intervalMs);
    },
    print(text) {
      log.clear();
      stream.write(`${text}\n`);
      if (!stopped) draw();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(ticker);
      if (timer) clearTimeout(timer);
      draw();
      log.done();
    },
  };
}

/** One timestamped line per event: for CI logs and pipes. */
export function lineDriver(
  write: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  now: () => Date = () => new Date(),
): ConsoleDriver {
  return {
    event(event) {
      write(eventLine(event, now()));
    },
    changed() {},
    print(text) {
      write(text);
    },
    stop() {},
  };
}
