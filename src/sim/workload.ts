// Generates the request stream of a simulated serving run. Invariants: the result is a pure function of
// the options (seed included); requests are sorted by arrival step (ties keep id order) and ids are
// 0..requests-1 in generation order; every prompt is non-empty and no request's prompt + output exceeds
// maxTotalLength; a follow-up's prompt starts with its parent's whole conversation (prompt + the tokens
// parent sample 0 generates) and arrives after the parent could have finished.
import { SeededRandom } from './hash';
import { generateTokens, randomTokens, sampleSeed } from './tokens';

export interface WorkloadOptions {
  requests: number;
  /** Mean arrivals per scheduler step (Poisson); Infinity puts every request at step 0. */
  arrivalRate: number;
  /** Tokens of the system prompt. */
  systemPromptLength: number;
  /** Fraction of requests (0..1) that start with the shared system prompt. */
  prefixSharing: number;
  /** Distinct few-shot example blocks; a request using one follows the system prompt with it. */
  fewShotGroups: number;
  fewShotLength: number;
  /** Fraction of requests using one of the few-shot blocks. */
  fewShotFraction: number;
  /** Fraction of requests that continue an earlier conversation (multi-turn). */
  followUpFraction: number;
  /** Mean tokens of the user's own text (uniform in [mean/2, 3·mean/2]). */
  promptLength: number;
  /** Mean tokens to generate per sample (uniform in [mean/2, 3·mean/2]). */
  outputLength: number;
  /** Parallel samples of a request that samples (forks after its prompt). */
  samplesPerRequest: number;
  /** Fraction of requests that ask for samplesPerRequest samples (the rest ask for one). */
  parallelSampleFraction: number;
  /** Longest prompt + output of one request. */
  maxTotalLength: number;
  vocabSize: number;
  seed: number;
}

export type RequestKind = 'fresh' | 'few-shot' | 'follow-up';

export interface SimRequest {
  id: number;
  arrivalStep: number;
  prompt: number[];
  outputLength: number;
  samples: number;
  seed: number;
  kind: RequestKind;
  /** Whether the prompt starts with the shared system prompt. */
  sharesSystemPrompt: boolean;
  /** Id of the conversation this follows up on, or -1. */
  parentId: number;
}

function jitter(random: SeededRandom, mean: number): number {
  if (mean <= 0) return 0;
  return Math.max(1, random.int(Math.ceil(mean / 2), Math.floor((3 * mean) / 2)));
}

export function generateWorkload(options: WorkloadOptions): SimRequest[] {
  const random = new SeededRandom(options.seed);
  const vocab = options.vocabSize;
  const systemPrompt = randomTokens(random, options.systemPromptLength, vocab);
  const fewShots = Array.from({ length: options.fewShotGroups }, () => randomTokens(random, options.fewShotLength, vocab));
  const requests: SimRequest[] = [];
  let clock = 0;
  for (let id = 0; id < options.requests; id++) {
    if (Number.isFinite(options.arrivalRate) && id > 0) clock += random.exponential(options.arrivalRate);
    let arrivalStep = Math.floor(clock);
    const outputLength = Math.min(jitter(random, options.outputLength), options.maxTotalLength - 1);
    const samples = options.samplesPerRequest > 1 && random.chance(options.parallelSampleFraction) ? options.samplesPerRequest : 1;
    const seed = random.nextUint32();
    const userText = randomTokens(random, jitter(random, options.promptLength), vocab);
    const wantsFollowUp = id > 0 && random.chance(options.followUpFraction);
    const parent = wantsFollowUp ? requests[random.int(0, requests.length - 1)]! : undefined;
    let prompt: number[];
    let kind: RequestKind = 'fresh';
    let sharesSystemPrompt = false;
    let parentId = -1;
    const conversation = parent ? [...parent.prompt, ...generateTokens(parent.prompt[parent.prompt.length - 1]!, sampleSeed(parent.seed, 0), parent.outputLength, vocab)] : [];
    if (parent && conversation.length + userText.length + outputLength <= options.maxTotalLength) {
      prompt = [...conversation, ...userText];
      kind = 'follow-up';
      sharesSystemPrompt = parent.sharesSystemPrompt;
      parentId = parent.id;
      arrivalStep = Math.max(arrivalStep, parent.arrivalStep + parent.outputLength + 1);
    } else {
      sharesSystemPrompt = options.systemPromptLength > 0 && random.chance(options.prefixSharing);
      const useFewShot = fewShots.length > 0 && random.chance(options.fewShotFraction);
      const fewShot = useFewShot ? fewShots[random.int(0, fewShots.length - 1)]! : [];
      if (useFewShot) kind = 'few-shot';
      prompt = [...(sharesSystemPrompt ? systemPrompt : []), ...fewShot, ...userText];
      const room = options.maxTotalLength - outputLength;
      if (prompt.length > room) prompt = prompt.slice(prompt.length - Math.max(1, room));
    }
    requests.push({ id, arrivalStep, prompt, outputLength, samples, seed, kind, sharesSystemPrompt, parentId });
  }
  return requests.sort((a, b) => a.arrivalStep - b.arrivalStep || a.id - b.id);
}
