// Every visible text of the parts (CSS selectors) whose contrast with what is behind
// it is below WCAG AA (4.5:1; 3:1 for large text). Colours are blended as painted: a
// text's alpha, its ancestors' opacity, translucent backgrounds over what is under them.
(selectors) => {
    const rgba = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
    const luminance = (c) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
    };
    const behind = (e) => {
      const layers = [];
      for (let n = e; n; n = n.parentElement) {
        const c = rgba(getComputedStyle(n).backgroundColor);
        if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
      }
      let bg = [255, 255, 255, 1];
      for (const c of layers.reverse()) bg = over(c, bg);
      return bg;
    };
    const out = [];
    for (const selector of selectors) {
      for (const root of document.querySelectorAll(selector)) {
        for (const e of [root, ...root.querySelectorAll('*')]) {
          const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
          if (!own || e.offsetParent === null || e.disabled) continue;
          const style = getComputedStyle(e);
          let alpha = 1;
          for (let n = e; n; n = n.parentElement) alpha *= Number(getComputedStyle(n).opacity);
          const fg = rgba(style.color);
          const bg = behind(e);
          const text = over([fg[0], fg[1], fg[2], fg[3] * alpha], bg);
          const [hi, lo] = [luminance(text), luminance(bg)].sort((a, b) => b - a);
          const ratio = (hi + 0.05) / (lo + 0.05);
          const size = parseFloat(style.fontSize);
          const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
          if (ratio < (large ? 3 : 4.5)) {
            out.push(`${ratio.toFixed(2)}:1 ${e.tagName.toLowerCase()}.${e.className} "${e.textContent.trim().slice(0, 30)}"`);
          }
        }
      }
    }
    return out;
}
