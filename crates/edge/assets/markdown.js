// The onboarding message's renderer, shared by the enrollment wizard and the admin UI's live
// preview (which serves this same file), so admins see exactly what users will see.
"use strict";

// Minimal, safe markdown: the text is escaped first, then a few constructs are added.
function onrampMarkdown(src) {
  const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  const inline = (s) => esc(s)
    .replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>")
    .replace(/\*(.+?)\*/g, "<em>$1</em>")
    .replace(/`(.+?)`/g, "<code>$1</code>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer">$1</a>');
  return src.split(/\n{2,}/).map((block) => {
    const lines = block.split("\n");
    const heading = /^(#{1,3})\s+(.*)$/.exec(block);
    if (heading && lines.length === 1) return `<h${heading[1].length + 2}>${inline(heading[2])}</h${heading[1].length + 2}>`;
    if (lines.every((l) => /^\s*[-*]\s+/.test(l))) return "<ul>" + lines.map((l) => `<li>${inline(l.replace(/^\s*[-*]\s+/, ""))}</li>`).join("") + "</ul>";
    return lines.map((l) => {
      const h = /^(#{1,3})\s+(.*)$/.exec(l);
      return h ? `<h${h[1].length + 2}>${inline(h[2])}</h${h[1].length + 2}>` : `<p>${inline(l)}</p>`;
    }).join("");
  }).join("");
}

