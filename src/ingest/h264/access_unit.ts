import type { TimedNal } from "./annexb.ts";
import { isSlice, NalType, nalType } from "./nal.ts";
import { nalDefect } from "./nal_check.ts";
import { parsePps, type PpsInfo } from "./pps.ts";
import { parseSliceHeader, type SliceHeader, startsNewPicture } from "./slice_header.ts";
import { parseSps, type SpsInfo } from "./sps.ts";

/** The parameter sets in force for a picture. */
export interface ParamSets {
  /** Equal keys, equal parameter sets: compared across connections, so it is the content itself. */
  key: string;
  sps: Uint8Array[];
  pps: Uint8Array[];
  /** The SPS the picture's PPS refers to. */
  info: SpsInfo;
}

/** How a picture was known to be whole. */
export type Completion =
  /** The next picture began (a slice of another picture, an AUD, end of sequence): certain. */
  | "next"
  /** Its slices cover the layout the stream has kept for several pictures: no need to wait. */
  | "layout"
  /** The stream ended while it was in progress: it may lack slices. */
  | "end";

/** One coded picture: its NAL units in arrival order, parameter sets included. */
export interface AccessUnit {
  /** Arrival of its first NAL unit other than an SPS or PPS. */
  ts: number;
  nals: Uint8Array[];
  idr: boolean;
  /** A slice header did not parse: the picture cannot be decoded. */
  corrupt: boolean;
  /**
   * It may lack slices: the stream ended while it was in progress, or it was joined after its first
   * slice (a connection that opened mid-picture).
   */
  incomplete: boolean;
  /** A picture before this one was passed on without all its slices: this one may refer to it. */
  gapBefore: boolean;
  /** The first slice's header; null when none parsed. */
  slice: SliceHeader | null;
  /** Null while the PPS or SPS its slices name is unknown. */
  params: ParamSets | null;
  completion: Completion;
}

/** Pictures completed by lookahead with one slice layout before it is trusted to end a picture. */
const LAYOUT_STREAK = 4;
/** Non-slice units kept while no slice comes: more are discarded (and counted), oldest first. */
const MAX_PENDING = 64;

interface Picture {
  ts: number | null;
  nals: Uint8Array[];
  idr: boolean;
  corrupt: boolean;
  gapBefore: boolean;
  slice: SliceHeader | null;
  params: ParamSets | null;
  /** first_mb_in_slice of each slice, in arrival order. */
  layout: number[];
}

/**
 * Groups NAL units into pictures, deciding with lookahead (H.264 7.4.1.2.3/7.4.1.2.4): a picture ends
 * at an AUD or end of sequence, or when a slice starts another picture (first_mb_in_slice 0, or a
 * different frame_num, PPS, nal_ref_idc, IDR id or POC). A parameter set or SEI between the slices
 * of a picture does not end it: real producers repeat SPS and PPS before every IDR slice. Parameter
 * sets apply from the next picture that begins after them, never to the one in progress.
 *
 * Waiting for the next picture would hold the last picture before a pause until the stream
 * resumes, so once the stream has kept one slice layout for several pictures, a picture whose
 * slices cover that layout is complete at once. A slice that arrives later for such a picture is
 * counted (`lateSlices`), dropped, and turns the shortcut off for this stream.
 *
 * @example
 * const asm = new AccessUnitAssembler();
 * for (const nal of nals) frames.push(...asm.push(nal));
 * const last = asm.flush(); // at the end of the stream
 */
export class AccessUnitAssembler {
  /** NAL units refused, by reason (src/ingest/h264/nal_check.ts, and parameter sets and slice headers that do not parse or make no sense). */
  refused = { badHeaders: 0, badEscapes: 0, badSei: 0, badParamSets: 0, badSlices: 0, strayNals: 0 };
  /** Slices that arrived for a picture already completed by its layout. */
  lateSlices = 0;
  #sps = new Map<number, { nal: Uint8Array; info: SpsInfo }>();
  #pps = new Map<number, { nal: Uint8Array; info: PpsInfo }>();
  #params: ParamSets | null = null;
  #cur: Picture | null = null;
  /** Non-VCL units after the last slice: they open the next picture unless a slice continues this one. */
  #pending: TimedNal[] = [];
  #layout: number[] = [];
  #streak = 0;
  #predict = true;
  /** The last picture completed by its layout, to recognise a late slice of it. */
  #predicted: SliceHeader | null = null;
  #gapNext = false;

  push(nal: TimedNal): AccessUnit[] {
    const b = nal.data;
    const type = nalType(b);
    const defect = nalDefect(b);
    const out: AccessUnit[] = [];
    if (defect) {
      this.refused[defect]++;
      // A slice that cannot be trusted spoils the picture in progress; anything else goes alone.
      if (isSlice(type) && defect === "badEscapes") this.#spoil(nal);
      return out;
    }
    if (type === NalType.sps || type === NalType.pps) this.#paramSet(b, type);
    if (type === NalType.aud) this.#complete("next", out);
    if (isSlice(type)) this.#slice(nal, out);
    else if (type === 10 || type === 11) { // end of sequence / stream: the last unit of its picture
      this.#pending.push(nal);
      this.#complete("next", out);
    } else if (this.#pending.push(nal) > MAX_PENDING) {
      this.#pending.shift();
      this.refused.strayNals++;
    }
    return out;
  }

  /** Arrival of the earliest unit not yet passed on in a picture, if any. */
  get pendingSince(): number | null {
    if (this.#cur?.ts != null) return this.#cur.ts;
    const first = this.#pending.find((n) =>
      nalType(n.data) !== NalType.sps && nalType(n.data) !== NalType.pps
    );
    return first?.ts ?? null;
  }

  /** A NAL unit already pushed was cut short: its picture cannot be decoded, and nor can those after it. */
  damage(): void {
    if (this.#cur) this.#cur.corrupt = true;
    else this.#gapNext = true;
  }

  /** A container framed the picture in progress as whole (an FLV tag ended): it completes now. */
  complete(): AccessUnit | null {
    const out: AccessUnit[] = [];
    this.#complete("next", out);
    return out[0] ?? null;
  }

  /** The stream ended: the picture in progress, if any, as it is (`completion: "end"`). */
  flush(): AccessUnit | null {
    const out: AccessUnit[] = [];
    this.#complete("end", out);
    this.#pending = [];
    this.#predicted = null;
    return out[0] ?? null;
  }

  #slice(nal: TimedNal, out: AccessUnit[]): void {
    let h: SliceHeader | null = null;
    try {
      h = parseSliceHeader(nal.data, (id) => this.#pps.get(id)?.info, (id) => this.#sps.get(id)?.info);
    } catch {
      this.refused.badSlices++;
    }
    const cur = this.#cur;
    if (!h) return this.#spoil(nal);
    const p = this.#predicted;
    if (!cur && p && h.firstMb !== 0 && !startsNewPicture(p, h)) {
      this.lateSlices++;
      this.#predict = false;
      this.#predicted = null;
      this.#gapNext = true;
      return;
    }
    if (cur && (h.firstMb === 0 || !cur.slice || startsNewPicture(cur.slice, h))) this.#complete("next", out);
    const pic = this.#cur ?? this.#begin(nal, h);
    this.#append(pic, nal);
    pic.layout.push(h.firstMb);
    if (
      this.#predict && this.#streak >= LAYOUT_STREAK && !pic.corrupt &&
      sameLayout(pic.layout, this.#layout)
    ) {
      this.#predicted = pic.slice;
      this.#complete("layout", out);
    }
  }

  /** Which picture an unreadable slice belongs to is unknown: the one in progress is not decodable. */
  #spoil(nal: TimedNal): void {
    const pic = this.#cur ?? this.#begin(nal);
    this.#append(pic, nal);
    pic.corrupt = true;
  }

  /** A new picture whose first slice is `nal`; the units pending since the last picture open it. */
  #begin(nal: TimedNal, h: SliceHeader | null = null): Picture {
    const params = h ? this.#paramsFor(h.ppsId) : null;
    const pic: Picture = {
      ts: null,
      nals: [],
      idr: nalType(nal.data) === NalType.idr,
      corrupt: false,
      gapBefore: this.#gapNext,
      slice: h,
      params,
      layout: [],
    };
    this.#gapNext = false;
    this.#predicted = null;
    this.#cur = pic;
    return pic;
  }

  /** Adds the pending units, then `nal`, to `pic`; parameter sets do not time a picture. */
  #append(pic: Picture, nal: TimedNal): void {
    const add = (n: TimedNal) => {
      const t = nalType(n.data);
      if (pic.ts === null && t !== NalType.sps && t !== NalType.pps) pic.ts = n.ts;
      pic.nals.push(n.data);
    };
    if (this.#pending.length > 0) {
      this.#pending.forEach(add);
      this.#pending = [];
    }
    add(nal);
  }

  #complete(how: Completion, out: AccessUnit[]): void {
    const pic = this.#cur;
    if (!pic) return;
    this.#cur = null;
    const missingStart = pic.layout[0] !== 0;
    if (pic.idr && !pic.corrupt && this.#tooSmallForIdr(pic)) {
      this.refused.badSlices++;
      pic.corrupt = true;
    }
    if (how === "next" && !pic.corrupt && !missingStart) {
      if (sameLayout(pic.layout, this.#layout)) this.#streak++;
      else {
        this.#layout = pic.layout;
        this.#streak = 1;
      }
    }
    if (how !== "layout") {
      // Units that came after the last slice (an AUD or end of sequence excepted) open the next picture.
      const tail = this.#pending.filter((n) => nalType(n.data) === 10 || nalType(n.data) === 11);
      for (const n of tail) pic.nals.push(n.data);
      this.#pending = this.#pending.filter((n) => !tail.includes(n));
    }
    out.push({
      ts: pic.ts!,
      nals: pic.nals,
      idr: pic.idr,
      corrupt: pic.corrupt,
      incomplete: how === "end" || missingStart,
      gapBefore: pic.gapBefore,
      slice: pic.slice,
      params: pic.params,
      completion: how,
    });
  }

  #paramSet(nal: Uint8Array, type: number): void {
    try {
      if (type === NalType.sps) {
        const info = parseSps(nal);
        if (!equalBytes(this.#sps.get(info.spsId)?.nal, nal)) {
          this.#sps.set(info.spsId, { nal: nal.slice(), info });
          this.#params = null;
        }
      } else {
        const info = parsePps(nal);
        if (!this.#sps.has(info.spsId)) throw new RangeError(`PPS refers to unknown SPS ${info.spsId}`);
        if (!equalBytes(this.#pps.get(info.ppsId)?.nal, nal)) {
          this.#pps.set(info.ppsId, { nal: nal.slice(), info });
          this.#params = null;
        }
      }
    } catch {
      this.refused.badParamSets++;
    }
  }

  /**
   * A CAVLC IDR picture spends at least 6 bits on each macroblock (an I_16x16 mb_type, the chroma
   * mode, the QP delta and an empty DC coeff_token): fewer bytes than that is not a picture,
   * whatever its headers say. (CABAC can code a flat picture in less, so it is not judged.)
   */
  #tooSmallForIdr(pic: Picture): boolean {
    const pps = pic.slice && this.#pps.get(pic.slice.ppsId)?.info;
    if (!pic.params || !pps || pps.cabac) return false;
    let bytes = 0;
    for (const n of pic.nals) if (isSlice(nalType(n))) bytes += n.length;
    return bytes * 8 < pic.params.info.frameMbs * 6;
  }

  /** The parameter sets for a picture whose slices name PPS `ppsId`; null while it or its SPS is unknown. */
  #paramsFor(ppsId: number): ParamSets | null {
    const pps = this.#pps.get(ppsId);
    const sps = pps && this.#sps.get(pps.info.spsId);
    if (!sps) return null;
    if (this.#params?.info !== sps.info) {
      const spsList = [...this.#sps.values()].map((s) => s.nal);
      const ppsList = [...this.#pps.values()].map((p) => p.nal);
      this.#params = {
        key: [...spsList, ...ppsList].map(hex).join("|"),
        sps: spsList,
        pps: ppsList,
        info: sps.info,
      };
    }
    return this.#params;
  }
}

function sameLayout(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function equalBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
