// Keyboard use of the two tables: one tabbable row (roving tabindex) kept across re-renders,
// and arrow / Home / End / Page keys to move, Enter / Space to select.

export function focusedKey(tbody, attr) {
  const a = document.activeElement;
  return a && tbody.contains(a) && a.tagName === "TR" ? a.getAttribute(attr) : null;
}

// Keeps exactly one row tabbable (roving tabindex) and restores focus after a re-render.
export function fixRoving(tbody, attr, focusKey, selKey) {
  const rows = [...tbody.rows];
  if (!rows.length) return;
  const pick =
    (focusKey && rows.find((r) => r.getAttribute(attr) === focusKey)) ||
    (selKey && rows.find((r) => r.getAttribute(attr) === selKey)) ||
    rows[0];
  for (const r of rows) r.tabIndex = r === pick ? 0 : -1;
  if (focusKey && pick.getAttribute(attr) === focusKey) pick.focus({ preventScroll: true });
}

// Up/Down/Home/End move focus between rows; Enter/Space selects.
export function gridKeys(ev, tbody, onSelect, attr) {
  const row = ev.target.closest("tr");
  if (!row || row.parentElement !== tbody) return;
  const rows = [...tbody.rows];
  const i = rows.indexOf(row);
  let next = null;
  switch (ev.key) {
    case "ArrowDown":
      next = rows[Math.min(i + 1, rows.length - 1)];
      break;
    case "ArrowUp":
      next = rows[Math.max(i - 1, 0)];
      break;
    case "Home":
      next = rows[0];
      break;
    case "End":
      next = rows[rows.length - 1];
      break;
    case "PageDown":
      next = rows[Math.min(i + 10, rows.length - 1)];
      break;
    case "PageUp":
      next = rows[Math.max(i - 10, 0)];
      break;
    case "Enter":
    case " ":
      ev.preventDefault();
      onSelect(row.getAttribute(attr));
      return;
    default:
      return;
  }
  ev.preventDefault();
  if (next) {
    for (const r of rows) r.tabIndex = r === next ? 0 : -1;
    next.focus();
  }
}
