// Whether the Vulkan loader on Linux has any driver (ICD) manifest to load, checked the way the loader
// looks for them, so that a machine with none goes straight to SwiftShader instead of first asking Dawn
// for a hardware adapter (which prints "vkCreateInstance: Found no drivers!" and a stack line to
// stderr). Invariants: pure (the environment and directory listing are passed in); answers true
// whenever the loader could find a driver: any driver-list variable set, or any *.json in one of the
// loader's search directories (the XDG config and data directories and their defaults, /etc and
// /usr/local/etc), so a GPU is never skipped for want of looking.

export type ListDirectory = (path: string) => readonly string[];

/** The directories the Vulkan loader searches for ICD manifests (`<dir>/vulkan/icd.d`), most specific first. */
export function vulkanDriverDirectories(env: Readonly<Record<string, string | undefined>>): string[] {
  const home = env.HOME ?? '';
  const split = (value: string | undefined, fallback: string) => (value || fallback).split(':').filter(Boolean);
  const bases = [
    ...split(env.XDG_CONFIG_HOME, home ? `${home}/.config` : ''),
    ...split(env.XDG_CONFIG_DIRS, '/etc/xdg'),
    '/etc',
    '/usr/local/etc',
    ...split(env.XDG_DATA_HOME, home ? `${home}/.local/share` : ''),
    ...split(env.XDG_DATA_DIRS, '/usr/local/share:/usr/share'),
  ];
  return [...new Set(bases.map((base) => `${base}/vulkan/icd.d`))];
}

/** True when the loader has a driver manifest to try (or is told where drivers are). */
export function vulkanDriverListed(env: Readonly<Record<string, string | undefined>>, listDirectory: ListDirectory): boolean {
  if (env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES || env.VK_ADD_DRIVER_FILES) return true;
  return vulkanDriverDirectories(env).some((dir) => listDirectory(dir).some((name) => name.endsWith('.json')));
}
