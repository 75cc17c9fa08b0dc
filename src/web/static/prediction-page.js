// @ts-check
/** Entry point of the prediction page (urls.web). */
import { initTokenControls } from "./api.js";
import { followPrediction } from "./prediction.js";

initTokenControls();
const section = /** @type {HTMLElement | null} */ (document.querySelector("[data-prediction]"));
if (section) followPrediction(section);
