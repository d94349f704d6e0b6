// The phone's form as GET /api/form describes it. The article's form is the pages' own markup and words; any other
// (another field, or the same two names with other labels, rules or a pattern) is built from its definition.

const ARTICLE = [
  { name: 'name', type: 'text', label: { ja: 'お名前', en: 'Name' }, required: true, maxLength: 20 },
  { name: 'phone', type: 'tel', label: { ja: '電話番号', en: 'Phone number' }, required: true, maxLength: 15 },
];

/** Whether `fields` (GET /api/form's `fields`) is exactly the article's form. */
export function isArticleForm(fields) {
  return Array.isArray(fields) && fields.length === ARTICLE.length && fields.every((field, index) => {
    const article = ARTICLE[index];
    return field !== null && typeof field === 'object' && Object.keys(field).length === Object.keys(article).length &&
      field.name === article.name && field.type === article.type && field.required === article.required &&
      field.maxLength === article.maxLength && field.label?.ja === article.label.ja && field.label?.en === article.label.en;
  });
}
