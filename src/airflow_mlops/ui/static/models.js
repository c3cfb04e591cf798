// Links of the Models pages (airflow_mlops/ui/templates/base.html inlines this file in a script element under the
// page's CSP nonce). Inside the Airflow UI the page sits in a sandboxed iframe without allow-popups or
// allow-top-navigation: links marked data-top (Airflow pages) and data-new-tab (MLflow) are opened through an
// anchor in the same-origin parent document, and only when they are http(s) links. Standalone, they are
// ordinary links.
(function () {
  function embeddedParent() {
    try { if (window.top !== window.self && window.top.document) { return window.top; } } catch (e) {}
    return null;
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-top], a[data-new-tab]") : null;
    var top = link ? embeddedParent() : null;
    if (!top) { return; }
    event.preventDefault();
    if (link.protocol !== "http:" && link.protocol !== "https:") { return; }
    var anchor = top.document.createElement("a");
    anchor.href = link.href;
    if (link.hasAttribute("data-new-tab")) { anchor.target = "_blank"; anchor.rel = "noopener noreferrer"; }
    top.document.body.appendChild(anchor);
    anchor.click();
    anchor.remove();
  });
})();
