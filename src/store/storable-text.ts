/** U+0000 and UTF-16 halves without their partner: PostgreSQL's text and jsonb refuse both. */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, "g");

/** Whether PostgreSQL can store this string in text and jsonb. */
export function isStorableText(text: string): boolean {
  return !UNSTORABLE.test(text);
}

/** A string PostgreSQL can store in text and jsonb: NUL and lone surrogates become U+FFFD. */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE_ALL, "\uFFFD");
}
