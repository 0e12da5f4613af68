/**
 * Span attributes as the stage modules produce them: plain data, no OpenTelemetry import.
 * The value types are the subset of OTel `AttributeValue` we emit.
 */
export type AttributeValue = string | number | boolean | string[];
export type Attributes = Record<string, AttributeValue>;

/**
 * Sets `key` only when `value` carries information: `undefined`, `''`, `[]` and non-finite
 * numbers are omitted, so a span never shows an empty or meaningless attribute. `false` and `0`
 * are kept.
 */
export function setAttr(attrs: Attributes, key: string, value: AttributeValue | undefined): void {
  if (value === undefined || value === '') return;
  if (Array.isArray(value) && value.length === 0) return;
  if (typeof value === 'number' && !Number.isFinite(value)) return;
  attrs[key] = value;
}
