// Teams page: the copy button beside an invitation link (shown once). Delegated, so it works on the fragment htmx
// swaps in. Without clipboard access the link stays selected for a manual copy.
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
