// The flag list handed to Dawn's Node binding (`create(flags)`), built from this runtime's toggles and
// the caller's flags. Invariants: Dawn keeps only the last of a repeated `key=value` flag, so each of
// `enable-dawn-features` and `disable-dawn-features` appears at most once, holding the runtime's toggles
// and the caller's together; a toggle the caller names in one list is dropped from the runtime's other
// list (the caller decides); every other flag of the caller passes through unchanged, in order.

const ENABLE = 'enable-dawn-features';
const DISABLE = 'disable-dawn-features';

export interface DawnToggles {
  enable: readonly string[];
  disable: readonly string[];
}

export function dawnFlags(runtime: DawnToggles, callerFlags: readonly string[] = []): string[] {
  const callerEnable: string[] = [];
  const callerDisable: string[] = [];
  const rest: string[] = [];
  for (const flag of callerFlags) {
    const at = flag.indexOf('=');
    const key = at < 0 ? flag : flag.slice(0, at);
    const list = key === ENABLE ? callerEnable : key === DISABLE ? callerDisable : undefined;
    if (list === undefined) rest.push(flag);
    else list.push(...flag.slice(at + 1).split(',').filter(Boolean));
  }
  const enable = unique([...runtime.enable.filter((t) => !callerDisable.includes(t)), ...callerEnable]);
  const disable = unique([...runtime.disable.filter((t) => !callerEnable.includes(t)), ...callerDisable]);
  return [
    ...(enable.length > 0 ? [`${ENABLE}=${enable.join(',')}`] : []),
    ...(disable.length > 0 ? [`${DISABLE}=${disable.join(',')}`] : []),
    ...rest,
  ];
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}
