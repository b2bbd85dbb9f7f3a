import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { PRESETS, resolveSimOptions } from '../../src/sim/options';

describe('resolveSimOptions', () => {
  it('applies overrides to a preset and ignores undefined ones', () => {
    const o = resolveSimOptions({ requests: 5, numLayers: undefined }, 'small');
    expect(o.requests).toBe(5);
    expect(o.numLayers).toBe(PRESETS.small.numLayers);
    expect(resolveSimOptions({}, 'gpu').numLayers).toBe(PRESETS.gpu.numLayers);
  });

  it('rejects inconsistent or out-of-range options with ConfigError', () => {
    expect(() => resolveSimOptions({ headDim: 20 })).toThrowError(ConfigError);
    expect(() => resolveSimOptions({ numQueryHeads: 3, numKvHeads: 2 })).toThrowError(/multiple of numKvHeads/);
    expect(() => resolveSimOptions({ requests: 0 })).toThrowError(/requests/);
    expect(() => resolveSimOptions({ prefixSharing: 1.5 })).toThrowError(/prefixSharing/);
    expect(() => resolveSimOptions({ blockSize: 2.5 })).toThrowError(/blockSize/);
    expect(() => resolveSimOptions({ arrivalRate: 0 })).toThrowError(/arrivalRate/);
    expect(() => resolveSimOptions({ minVerifications: 0 })).toThrowError(/minVerifications/);
    expect(() => resolveSimOptions({ kvDtype: 'bf16' as never })).toThrowError(/kvDtype/);
  });
});
