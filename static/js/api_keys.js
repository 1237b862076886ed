// Settings page, "API keys": the copy button beside a newly created key (shown once). Delegated, so it works on
// the fragment htmx swaps in. Without clipboard access the key stays selected for a manual copy.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) {
      return;
    }
    var source = document.querySelector(button.getAttribute("data-copy"));
    var status = document.getElementById("api-key-copied");
    if (!source) {
      return;
    }
    var text = source.textContent.trim();
    var selection = window.getSelection();
    var range = document.createRange();
    range.selectNodeContents(source);
    selection.removeAllRanges();
    selection.addRange(range);
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () {
        if (status) { status.textContent = "Copied."; }
      }, function () {
        if (status) { status.textContent = "Selected: press Ctrl+C (⌘C) to copy."; }
      });
    } else if (status) {
      status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  });
}());
