// Typed element lookup for the demo page. Invariant: a missing element is a page bug and throws at
// startup with the id, instead of failing later with "cannot read properties of null".
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo page is missing #${id}`);
  return el as T;
}
