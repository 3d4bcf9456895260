// Reads every figure of a page as the browser drew it, for tests/harness/browser.py: legend entries and
// their colours, the marks drawn (lines, markers, bars) with their plot area, axis titles and
// tick labels with their boxes, and the headings. Plotly figures and the hand-drawn
// learning-curves SVG (hpo/figures/curve_figure.py) give the same record. The result goes, as
// JSON, into a hidden pre element (id figure-probe), which headless Chromium's --dump-dom then prints.
(function () {
  function box(el) {
    const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  }
  function colour(el, property) {
    const value = getComputedStyle(el)[property];
    return value && value !== "none" ? value : null;
  }
  function dashed(el) {
    const value = getComputedStyle(el).strokeDasharray;
    return Boolean(value) && value !== "none" && value !== "0px";
  }
  function plotly(gd) {
    const modebar = gd.querySelector(".modebar");
    const figure = { kind: "plotly", box: box(gd.querySelector(".svg-container")),
      legend: [], marks: [], titles: [], ticks: [], covers: modebar ? [box(modebar)] : [] };
    for (const entry of gd.querySelectorAll("g.legend g.traces")) {
      const colours = [];
      for (const path of entry.querySelectorAll("g.layers path")) {
        const c = path.classList.contains("js-line") ? colour(path, "stroke") : colour(path, "fill");
        if (c) colours.push(c);
      }
      const text = entry.querySelector(".legendtext");
      figure.legend.push({ name: text ? text.textContent : "", colours: colours });
    }
    for (const subplot of gd.querySelectorAll(".cartesianlayer > g.subplot")) {
      const id = [...subplot.classList].find((c) => c !== "subplot");
      const area = gd.querySelector(".draglayer > g." + id + " rect.nsewdrag");
      const plot = area ? box(area) : null;
      const add = (selector, kind, property) => {
        for (const el of subplot.querySelectorAll(selector)) {
          if (!el.getAttribute("d")) continue; // an empty trace draws nothing
          figure.marks.push({ kind: kind, colour: colour(el, property), box: box(el), plot: plot,
            dashed: dashed(el) });
        }
      };
      add(".scatterlayer .trace path.js-line", "line", "stroke");
      add(".scatterlayer .trace path.point", "point", "fill");
      add(".barlayer .trace path", "bar", "fill");
    }
    const axisTitles = {};
    for (const text of gd.querySelectorAll("text")) {
      const cls = text.getAttribute("class") || "";
      const match = cls.match(/^(x\d*|y\d*)title$/);
      if (match) axisTitles[match[1]] = text.textContent;
      if (match || cls === "annotation-text" || cls === "axis-title" || cls === "gtitle") {
        if (text.textContent) figure.titles.push({ text: text.textContent, box: box(text) });
      }
    }
    for (const text of gd.querySelectorAll("g.xtick > text, g.ytick > text, g[class$='tick'] > text")) {
      const axis = (text.parentNode.getAttribute("class") || "").replace(/tick$/, "");
      if (!text.textContent) continue;
      figure.ticks.push({ axis: axisTitles[axis] || axis, text: text.textContent, box: box(text) });
    }
    // Parallel coordinates: one axis per dimension, its title above it.
    for (const dimension of gd.querySelectorAll("g.y-axis")) {
      const title = dimension.querySelector("text.axis-title");
      for (const text of dimension.querySelectorAll("g.tick text")) {
        if (!text.textContent) continue;
        figure.ticks.push({ axis: title ? title.textContent : "", text: text.textContent, box: box(text) });
      }
    }
    return figure;
  }
  function handDrawn(svg) {
    const figure = { kind: "svg", box: box(svg), legend: [], marks: [], titles: [], ticks: [],
      covers: [] };
    for (const entry of svg.querySelectorAll("g.legend-entry")) {
      const line = entry.querySelector("line");
      figure.legend.push({ name: entry.querySelector("text").textContent,
        colours: [colour(line, "stroke")] });
    }
    const axisTitles = {};
    for (const title of svg.querySelectorAll("text.axis-title")) {
      axisTitles[title.dataset.axis] = title.textContent;
      figure.titles.push({ text: title.textContent, box: box(title) });
    }
    for (const title of svg.querySelectorAll("text.title")) {
      figure.titles.push({ text: title.textContent, box: box(title) });
    }
    for (const panel of svg.querySelectorAll("g.panel")) {
      const plot = box(panel.querySelector("rect.plot-area"));
      for (const el of panel.querySelectorAll(".curve")) {
        const property = el.tagName === "circle" ? "fill" : "stroke";
        figure.marks.push({ kind: el.tagName === "circle" ? "point" : "line",
          colour: colour(el, property), box: box(el), plot: plot, dashed: dashed(el) });
      }
      for (const tick of panel.querySelectorAll("text.tick")) {
        figure.ticks.push({ axis: axisTitles[tick.dataset.axis], text: tick.textContent, box: box(tick) });
      }
    }
    return figure;
  }
  function probe() {
    const page = {
      headings: [...document.querySelectorAll("h1, h2")].map((h) => ({ text: h.textContent, box: box(h) })),
      figures: [],
    };
    for (const figure of document.querySelectorAll(".js-plotly-plot, svg.learning-curves")) {
      const section = figure.closest("section");
      const heading = section && section.querySelector("h2");
      const record = figure.tagName.toLowerCase() === "svg" ? handDrawn(figure) : plotly(figure);
      record.heading = heading ? heading.textContent : document.title;
      page.figures.push(record);
    }
    const out = document.createElement("pre");
    out.id = "figure-probe";
    out.style.display = "none";
    out.textContent = JSON.stringify(page);
    document.body.appendChild(out);
  }
  // Plotly draws when its script runs and then redraws once for automargins: wait for both.
  window.addEventListener("load", () => setTimeout(probe, 1500));
})();
