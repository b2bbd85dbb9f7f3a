// Reads the demo's controls into simulation option overrides. Invariants: the prefix-sharing slider
// scales all three kinds of sharing together (0 turns off the system prompt, few-shot blocks and
// follow-ups alike); invalid numbers fall back to the preset (validation happens in the worker).
import { PRESETS, type SimOptions } from '../../src/sim/options';
import { byId } from './dom';

function intValue(id: string, min = 1): number | undefined {
  const raw = byId<HTMLInputElement>(id).value.trim();
  const v = Number(raw);
  return raw !== '' && Number.isInteger(v) && v >= min ? v : undefined;
}

export function readControls(): Partial<SimOptions> {
  const sharing = Number(byId<HTMLInputElement>('prefix-sharing').value);
  const base = PRESETS.small;
  return {
    requests: intValue('requests'),
    blockSize: intValue('block-size'),
    numBlocks: intValue('pool-blocks'),
    outputLength: intValue('output-length'),
    prefixSharing: sharing,
    fewShotFraction: base.fewShotFraction * sharing,
    followUpFraction: base.followUpFraction * sharing,
    seed: intValue('seed', 0),
  };
}

/** Keeps the slider's numeric label in step with it. */
export function bindSliderLabel(inputId: string, labelId: string): void {
  const input = byId<HTMLInputElement>(inputId);
  const label = byId(labelId);
  const update = (): void => {
    label.textContent = `${Math.round(Number(input.value) * 100)}%`;
  };
  input.addEventListener('input', update);
  update();
}
