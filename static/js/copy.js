// Copy buttons for secrets shown once (a new API key on the settings page, an invitation link on the Teams page):
// `data-copy` names the element to copy, `data-copied` the one that says what happened. Delegated, so it works on
// the fragments htmx swaps in. Without clipboard access the text stays selected for a manual copy.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("[data-copy][data-copied]") : null;
    if (!button) {
      return;
    }
    var source = document.querySelector(button.getAttribute("data-copy"));
    var status = document.querySelector(button.getAttribute("data-copied"));
    if (!source) {
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(source);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    var manual = function () { if (status) { status.textContent = "Selected: press Ctrl+C (⌘C) to copy."; } };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        if (status) { status.textContent = "Copied."; }
      }, manual);
    } else {
      manual();
    }
  });
}());
