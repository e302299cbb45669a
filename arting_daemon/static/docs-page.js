// The docs page's own words (the way back to the web page) in the reader's language, from
// the web page's catalogues; Swagger UI's words stay English.
import { start } from "./i18n.js";

start();
