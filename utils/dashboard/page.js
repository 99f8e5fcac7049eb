// The latent dashboard's page (utils/dashboard/page.py inlines it once into every exported HTML file).
// It reads the JSON in <script id="dashboard-data"> (utils/dashboard/payload.py says its shape):
//   {meta, vocab: {token id: text}, latents: {latent: page}, prompts: [view], search (index pages only)}
// and draws the view the address asks for: #latent=123, #prompt=0&token=5&rank=loss, or the index's #q=word.
// Token texts come from utils/lm/token_text.py, never empty: "·" starts a token that holds the rest of a character
// shown on the token before, and "⟨d8⟩" is a byte of a character split across tokens, shown alone.
(function(){
const D = JSON.parse(document.getElementById('dashboard-data').textContent);
const M = D.meta, $ = s => document.querySelector(s);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const show = s => esc(s).replace(/\n/g, '\u21b5').replace(/\t/g, '\u2192')
  .replace(/\u27e8[0-9a-f ]*\u27e9/g, b => `<span class="bytes">${b}</span>`);  // "⟨d8⟩", boxed: bytes, not text
const CONT = '\u00b7', BYTES = '\u27e8';  // the continuation mark, and the bracket that opens a byte label
const tokText = s => show(s === '' ? CONT : s);  // an empty piece (older exports) still shows the mark
const isCont = s => s === '' || s === CONT;
const contNote = '\nthis token holds the rest of the character shown on the token before it';
const byteNote = '<div class="muted"><span class="bytes">⟨d8⟩</span>: a byte of a character that byte-level BPE '
  + 'split across tokens; alone, it is no character</div>';
const hasBytes = texts => texts.some(s => String(s).includes(BYTES));
const missing = f => `To see its page, build the dashboard with it in <code>latents=</code>, e.g. `
  + `<code>dashboard.build(model, sae, tokens, latents=[..., ${esc(f)}])</code>, then export or browse it again`;
const voc = t => (D.vocab[t] !== undefined ? D.vocab[t] : '#' + t);
const fmt = (x, d=2) => (x === null || x === undefined) ? '–' : Number(x).toFixed(d);
function latentHref(f){
  if (D.latents[f] !== undefined) return '#latent=' + f;
  if (M.shard_of && M.shard_of[f] !== undefined) return M.shards[M.shard_of[f]] + '#latent=' + f;
  return null;
}
function latentLink(f){
  const h = latentHref(f);
  return h ? `<a class="latent-link" data-latent="${f}" href="${h}">${f}</a>`
           : `<a class="latent-missing" data-latent="${f}" href="#latent=${f}" title="not in this export">${f}</a>`;
}
function bars(counts, cls, w=300, h=70){
  const m = Math.max(1, ...counts), bw = w / counts.length;
  return `<svg width="${w}" height="${h}">` + counts.map((c, i) =>
    `<rect class="bar ${cls}" x="${i*bw}" y="${h - h*c/m}" width="${Math.max(bw-1,1)}" height="${h*c/m}"><title>${c}</title></rect>`
  ).join('') + '</svg>';
}
function context(c, maxAct){
  return '<div class="ctx">' + c.pieces.map((s, i) => {
    const a = c.acts[i], e = c.effects[i];
    let style = a > 0 ? `background:rgba(224,138,44,${Math.min(1, a / maxAct).toFixed(2)})` : '';
    let title = `activation ${fmt(a)}` + (isCont(s) ? contNote : '');
    if (e){
      const col = e.loss > 0 ? '26,107,26' : '170,17,17', k = Math.min(1, Math.abs(e.loss) / 0.5).toFixed(2);
      style += `;border-bottom-color:rgba(${col},${k})`;
      title += `\nremoving the latent at the previous token: loss on this token ${e.loss > 0 ? '+' : ''}${fmt(e.loss, 3)}`
             + '\nlargest log-prob changes: ' + e.top.map(([t, d]) => `${JSON.stringify(voc(t))} ${d > 0 ? '+' : ''}${fmt(d)}`).join(', ');
    }
    const cls = 'tok' + (i === c.centre ? ' centre' : '') + (isCont(s) ? ' cont' : '');
    return `<span class="${cls}" data-act="${a}"${e ? ` data-effect="${e.loss}"` : ''} style="${style}" `
      + `title="${esc(title)}">${tokText(s)}</span>`;
  }).join('') + '</div>';
}
function pairs(list, label){
  return '<table>' + list.map(([j, v]) => `<tr><td>${label(j)}</td><td class="num">${fmt(v, 3)}</td></tr>`).join('') + '</table>';
}
function latentPage(f){
  const p = D.latents[f];
  if (!p) return `<section id="missing" data-latent="${esc(f)}"><h2>Latent ${esc(f)} is not in this export.</h2>
    <p>${missing(f)}.</p>${M.index ? `<a href="${M.index}">index</a>` : ''}</section>`;
  const maxAct = Math.max(p.max_act, 1e-6), [lo, hi] = M.hist_log10;
  const effect = p.logits.kind === 'effect';
  const logitsWhat = effect
    ? `the exact change in each token's logit from this latent, averaged over its top ${p.logits.n_examples} examples (centred over the vocabulary)`
    : `weights only: W<sub>dec</sub>·W<sub>out</sub>, the final LayerNorm's centring and weight, W<sub>U</sub>; it ignores the context (the latent has no examples here)`;
  const logitRow = ([t, v]) => `<tr><td>${show(JSON.stringify(voc(t)))}</td><td class="num ${v > 0 ? 'pos' : 'neg'}">${fmt(v, 3)}</td></tr>`;
  return `<h1 id="latent-title" data-latent="${f}">Latent ${f} <span class="muted">(${esc(M.run)}: ${esc(M.architecture)}, ${esc(M.model)})</span></h1>
  <div class="grid">
  <section id="density"><h2>Density</h2>fires on <b>${(100*p.density).toPrecision(3)}%</b> of ${M.n_tokens.toLocaleString()} tokens
    (${p.n_fired.toLocaleString()} times); largest activation ${fmt(p.max_act)}</section>
  <section id="activation-histogram"><h2>Activation histogram</h2>${bars(p.hist, '')}
    <div class="muted">log<sub>10</sub> activation from ${lo} to ${hi}</div></section>
  <section id="logits"><h2>${effect ? 'Logit effect where it fires' : 'Logit weights'}</h2>
    <div class="muted">${logitsWhat}</div><div style="display:flex;gap:16px">
    <table>${p.logits.top.map(logitRow).join('')}</table><table>${p.logits.bottom.map(logitRow).join('')}</table></div>
    ${hasBytes(p.logits.top.concat(p.logits.bottom).map(([t]) => voc(t))) ? byteNote : ''}</section>
  <section id="logit-histogram"><h2>${effect ? 'Logit effect' : 'Logit weights'} (all tokens)</h2>${bars(p.logits.hist, 'l')}
    <div class="muted">from ${fmt(p.logits.range[0])} to ${fmt(p.logits.range[1])}</div></section>
  <section id="neurons"><h2>Neuron alignment</h2>top neuron holds <b>${fmt(100*p.neurons.share, 1)}%</b> of the decoder's norm²
    <h3>largest decoder weights</h3>${pairs(p.neurons.top, j => 'neuron ' + j)}
    <h3>most correlated neurons</h3>${pairs(p.neurons.correlated, j => 'neuron ' + j)}</section>
  <section id="correlated-latents"><h2>Correlated latents (co-firing, whole SAE)</h2>${pairs(p.cofiring, latentLink)}</section>
  <section id="nearest-latents"><h2>Nearest latents (decoder cosine)</h2>${pairs(p.nearest, latentLink)}</section>
  <section id="match"><h2>Matching latent in ${esc(M.other_run || 'the other run')}</h2>${p.match ?
    `latent ${p.match.latent}, decoder cosine <b>${fmt(p.match.cos, 3)}</b>` : '<span class="muted">no other run given</span>'}</section>
  </div>
  <section id="top-contexts"><h2>Top contexts</h2>
    <div class="muted">shading: activation; underline: effect of removing the latent on that token's loss
    (green: the latent helped, red: it hurt); hover a token for the largest changes</div>
    ${p.top.map(c => context(c, maxAct)).join('')}</section>
  <section id="interval-samples"><h2>Interval samples</h2>
    ${p.intervals.slice().reverse().map(g => `<h3>activations ${fmt(g.range[0])}–${fmt(g.range[1])}
      (${fmt(100*g.share, 1)}% of firings)</h3>` + g.samples.map(c => context(c, maxAct)).join('')).join('')}</section>`;
}
function promptPage(i, tok, key){
  const v = D.prompts[i];
  if (!v) return '<section id="missing"><h2>No such prompt</h2></section>';
  key = key || 'act';
  const toks = v.pieces.map((s, j) => `<span class="tok ptok${j === tok ? ' sel' : ''}${isCont(s) ? ' cont' : ''}" `
    + `data-token="${j}" title="${v.latents[j].length} latents${isCont(s) ? esc(contNote) : ''}">${tokText(s)}</span>`
  ).join('');
  let list = '';
  if (tok !== null && v.latents[tok]){
    const col = {act: 1, quantile: 2, loss: 3}[key];
    const rows = v.latents[tok].slice().sort((a, b) => (key === 'loss' ? Math.abs(b[col]) - Math.abs(a[col]) : (b[col] ?? -1) - (a[col] ?? -1)));
    const absent = rows.filter(r => latentHref(r[0]) === null).length;
    const note = `${absent} of these ${rows.length} latents (in grey) are not in this export: `
      + 'build the dashboard with them in <code>latents=</code> to see their pages.';
    list = (absent ? `<p id="prompt-missing" class="muted">${note}</p>` : '')
      + '<table id="prompt-latents"><tr><th>latent</th><th>activation</th><th>quantile</th><th>loss effect</th></tr>' +
      rows.map(r => `<tr><td>${latentLink(r[0])}</td><td class="num">${fmt(r[1])}</td><td class="num">${fmt(r[2])}</td>
        <td class="num ${r[3] > 0 ? 'pos' : 'neg'}">${fmt(r[3], 4)}</td></tr>`).join('') + '</table>';
  }
  const opts = ['act', 'quantile', 'loss'].map(k => `<option value="${k}"${k === key ? ' selected' : ''}>${
    {act: 'activation', quantile: 'activation quantile', loss: 'loss effect'}[k]}</option>`).join('');
  return `<section id="prompt-view"><h2>Prompt ${i}: the latents at each token</h2>
    <div class="ctx" id="prompt-tokens">${toks}</div>
    <p>rank by <select id="rank-key">${opts}</select> <span class="muted">(click a token)</span></p>${list}</section>`;
}
function indexPage(query){
  const q = (query || '').toLowerCase();
  const ids = Object.keys(D.search).filter(f => !q || f === q ||
    D.search[f].logits.concat(D.search[f].contexts).some(s => s.toLowerCase().includes(q))).slice(0, 200);
  return `<section id="search"><h2>Search latents by their top tokens</h2>
    <input id="search-box" value="${esc(query || '')}" placeholder="a token, or a latent id">
    <table id="search-results">${ids.map(f => `<tr><td>${latentLink(f)}</td><td class="num">${(100*D.search[f].density).toPrecision(2)}%</td>
      <td>${D.search[f].logits.map(s => show(JSON.stringify(s))).join(' ')}</td><td class="muted">${D.search[f].contexts.map(s => show(JSON.stringify(s))).join(' ')}</td></tr>`).join('')}</table>
    ${hasBytes(ids.flatMap(f => D.search[f].logits.concat(D.search[f].contexts))) ? byteNote : ''}</section>`;
}
function parse(){
  const h = {};
  (location.hash || ('#' + (M.start || ''))).replace(/^#/, '').split('&').forEach(kv => { const [k, v] = kv.split('='); if (k) h[k] = decodeURIComponent(v || ''); });
  return h;
}
function nav(){
  const ids = Object.keys(D.latents);
  const prompts = D.prompts.map((_, i) => `<a href="#prompt=${i}">prompt ${i}</a>`).join(' ');
  return `<b>Latent dashboard</b> <span>${ids.length ? `${ids.length} latents` : ''}</span>
    <label>latent <input id="goto" type="number" min="0" max="${M.d_sae - 1}"></label>
    ${M.index ? `<a href="${M.index}">index</a>` : ''} ${prompts}`;
}
// Go to href. A link within the page ("#latent=5") sets only the hash: in an <iframe srcdoc> (dashboard.show, the
// widget) a relative address resolves against the notebook's page, and following it would load the notebook there.
function go(href){
  if (href.startsWith('#')) location.hash = href.slice(1); else location.href = href;
}
document.addEventListener('click', e => {
  const a = e.target.closest && e.target.closest('a[href^="#"]');
  if (a && !e.defaultPrevented && e.button === 0){ e.preventDefault(); go(a.getAttribute('href')); }
});
function render(){
  const h = parse(), body = $('#app');
  $('#nav').innerHTML = nav();
  if (h.prompt !== undefined){
    body.innerHTML = promptPage(+h.prompt, h.token !== undefined ? +h.token : null, h.rank);
  } else if (M.is_index && h.latent === undefined){
    body.innerHTML = indexPage(h.q);
  } else {
    const f = h.latent !== undefined ? h.latent : Object.keys(D.latents)[0];
    body.innerHTML = f === undefined ? '<section id="missing">no latents</section>' : latentPage(f);
  }
  document.body.dataset.view = h.prompt !== undefined ? 'prompt' : (M.is_index && h.latent === undefined ? 'index' : 'latent');
  const g = $('#goto');
  g.addEventListener('change', () => go(latentHref(g.value) || '#latent=' + g.value));
  document.querySelectorAll('.ptok').forEach(t => t.addEventListener('click', () => {
    location.hash = `prompt=${h.prompt}&token=${t.dataset.token}` + (h.rank ? `&rank=${h.rank}` : '');
  }));
  const r = $('#rank-key');
  if (r) r.addEventListener('change', () => { location.hash = `prompt=${h.prompt}&token=${h.token || 0}&rank=${r.value}`; });
  const s = $('#search-box');
  if (s) s.addEventListener('change', () => { location.hash = 'q=' + encodeURIComponent(s.value); });
}
window.addEventListener('hashchange', render);
render();
})();
