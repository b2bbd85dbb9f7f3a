// The long-context paged-attention matrix for head dim 256 (real GPU only; skipped on SwiftShader):
// see describeLongMatrix in test/helpers/attention-shapes.ts.
import { describeLongMatrix, useShapeTestGpu } from '../helpers/attention-shapes';

useShapeTestGpu();
describeLongMatrix(256);
