// The check that lets a Linux machine without any Vulkan driver go straight to SwiftShader: it must say
// "a driver may exist" whenever the Vulkan loader could find one, wherever the loader looks.
import { describe, expect, it } from 'vitest';
import { vulkanDriverDirectories, vulkanDriverListed } from '../../src/gpu/vulkan-drivers';

/** A file system holding only `files` (full paths). */
const fakeFs = (...files: string[]) => (dir: string) =>
  files.filter((f) => f.startsWith(`${dir}/`) && !f.slice(dir.length + 1).includes('/')).map((f) => f.slice(dir.length + 1));

describe('vulkanDriverListed', () => {
  const env = { HOME: '/home/u' };

  it('is false with no manifest anywhere and no driver variable', () => {
    expect(vulkanDriverListed(env, fakeFs())).toBe(false);
    expect(vulkanDriverListed(env, fakeFs('/usr/share/vulkan/implicit_layer.d/layer.json', '/usr/share/vulkan/icd.d/README'))).toBe(false);
  });

  it('finds a manifest in each of the loader default directories', () => {
    for (const path of [
      '/usr/share/vulkan/icd.d/nvidia_icd.json',
      '/usr/local/share/vulkan/icd.d/intel_icd.x86_64.json',
      '/etc/vulkan/icd.d/nvidia_icd.json',
      '/etc/xdg/vulkan/icd.d/a.json',
      '/usr/local/etc/vulkan/icd.d/a.json',
      '/home/u/.config/vulkan/icd.d/a.json',
      '/home/u/.local/share/vulkan/icd.d/a.json',
    ]) {
      expect(vulkanDriverListed(env, fakeFs(path)), path).toBe(true);
    }
  });

  it('follows the XDG variables instead of their defaults', () => {
    const xdg = { HOME: '/home/u', XDG_DATA_DIRS: '/usr/local/nvidia/share:/opt/share', XDG_CONFIG_HOME: '/cfg' };
    expect(vulkanDriverListed(xdg, fakeFs('/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json'))).toBe(true);
    expect(vulkanDriverListed(xdg, fakeFs('/opt/share/vulkan/icd.d/x.json'))).toBe(true);
    expect(vulkanDriverListed(xdg, fakeFs('/cfg/vulkan/icd.d/x.json'))).toBe(true);
    expect(vulkanDriverListed(xdg, fakeFs('/usr/share/vulkan/icd.d/x.json'))).toBe(false); // XDG_DATA_DIRS replaced the default
    expect(vulkanDriverDirectories(xdg)).toContain('/etc/vulkan/icd.d'); // /etc is searched regardless
  });

  it('trusts any driver-list variable', () => {
    for (const name of ['VK_DRIVER_FILES', 'VK_ICD_FILENAMES', 'VK_ADD_DRIVER_FILES']) {
      expect(vulkanDriverListed({ ...env, [name]: '/somewhere/icd.json' }, fakeFs()), name).toBe(true);
    }
  });

  it('names each directory once', () => {
    const dirs = vulkanDriverDirectories({ HOME: '', XDG_DATA_DIRS: '/usr/share:/usr/share', XDG_CONFIG_DIRS: '/etc' });
    expect(new Set(dirs).size).toBe(dirs.length);
    expect(dirs).not.toContain('/vulkan/icd.d'); // no HOME: no home directories
  });
});
