// The try-it page: search movies by title (SearchMovies), rate some, then ask for
// recommendations from those ratings (Recommend with inline ratings: nothing is stored),
// explain one (ExplainPrediction) and list the movies similar to one (SimilarItems),
// all through the gateway's JSON API. Plain JS, no build step, no external resources.
"use strict";

const ratings = new Map(); // movie id (string) → {title, rating}
const RECOMMENDATIONS = 10;
const SIMILAR = 8;
const CONTRIBUTIONS = 5;

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function stars(value) {
  return `${Number(value).toFixed(2)} ★`;
}

function signed(value) {
  const shown = Math.abs(Number(value)).toFixed(2);
  if (Number(shown) === 0) return shown; // no "−0.00"
  return `${Number(value) > 0 ? "+" : "−"}${shown}`;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// One call of the JSON API; an error answer (a google.rpc.Status) is thrown with its message.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = $("#token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${answer.message}`);
  return answer;
}

function inlineRatings() {
  return {
    ratings: [...ratings].map(([movieId, { rating }]) => ({ movieId, rating })),
  };
}

function movieLine(movie, ...extra) {
  const genres = (movie.genres || []).join(", ");
  return [
    element("span", { class: "title" }, movie.title || `movie ${movie.movieId}`),
    genres ? element("span", { class: "genres" }, genres) : "",
    ...extra,
  ];
}

function starButtons(movie) {
  const chosen = ratings.get(movie.movieId)?.rating;
  const buttons = [1, 2, 3, 4, 5].map((value) =>
    element(
      "button",
      {
        type: "button",
        class: value === chosen ? "chosen" : "",
        "aria-label": `Rate ${value}`,
        onclick: () => rate(movie, value),
      },
      String(value),
    ),
  );
  return element("span", { class: "stars" }, ...buttons);
}

function rate(movie, value) {
  ratings.set(movie.movieId, { title: movie.title, rating: value, genres: movie.genres });
  showRatings();
  showResults(lastResults);
}

let lastResults = [];

function showResults(movies) {
  lastResults = movies;
  $("#search-results").replaceChildren(
    ...movies.map((movie) =>
      element("li", { "data-movie-id": movie.movieId }, ...movieLine(movie, starButtons(movie))),
    ),
  );
}

function showRatings() {
  const list = [...ratings].map(([movieId, movie]) =>
    element(
      "li",
      { "data-movie-id": movieId },
      ...movieLine(
        { movieId, ...movie },
        element("span", { class: "value" }, `${movie.rating} ★`),
        element(
          "span",
          { class: "actions" },
          element(
            "button",
            {
              type: "button",
              "aria-label": "Remove",
              onclick: () => {
                ratings.delete(movieId);
                showRatings();
                showResults(lastResults);
              },
            },
            "remove",
          ),
        ),
      ),
    ),
  );
  $("#ratings").replaceChildren(...list);
  $("#ratings-empty").hidden = ratings.size > 0;
  $("#recommend").disabled = ratings.size === 0;
}

async function search(event) {
  event.preventDefault();
  showError(null);
  const query = $("#search-query").value.trim();
  if (!query) return;
  $("#search-summary").textContent = "Searching…";
  try {
    const page = await api(
      "GET",
      `/v1/movies:search?query=${encodeURIComponent(query)}&pageSize=10`,
    );
    const more = page.totalSize > page.movies.length ? ` (the first ${page.movies.length})` : "";
    const count = page.totalSize === 1 ? "1 movie matches" : `${page.totalSize} movies match`;
    $("#search-summary").textContent = `${count} “${query}”${more}.`;
    showResults(page.movies);
  } catch (error) {
    $("#search-summary").textContent = "";
    showError(error);
  }
}

async function recommend() {
  showError(null);
  $("#recommend-summary").textContent = "Asking the model…";
  try {
    const answer = await api("POST", "/v1/recommend", {
      inlineRatings: inlineRatings(),
      k: RECOMMENDATIONS,
    });
    $("#model-version").textContent = `Model version ${answer.modelVersion}.`;
    $("#recommend-summary").textContent =
      "Best first, with the rating the model predicts you would give.";
    $("#recommendations").replaceChildren(
      ...answer.items.map((item) =>
        element(
          "li",
          { "data-movie-id": item.movieId },
          ...movieLine(
            item,
            element("span", { class: "value" }, `predicted ${stars(item.predictedRating)}`),
            element(
              "span",
              { class: "actions" },
              element("button", { type: "button", onclick: () => explain(item) }, "Why?"),
              " ",
              element("button", { type: "button", onclick: () => similar(item) }, "Similar"),
            ),
          ),
        ),
      ),
    );
    if (answer.items.length) {
      await Promise.all([explain(answer.items[0]), similar(answer.items[0])]);
    }
  } catch (error) {
    $("#recommend-summary").textContent = "";
    showError(error);
  }
}

async function explain(item) {
  try {
    const why = await api("POST", "/v1/explainPrediction", {
      inlineRatings: inlineRatings(),
      movieId: item.movieId,
      maxContributions: CONTRIBUTIONS,
    });
    const sum = element(
      "p",
      {},
      element("span", { class: "title" }, why.title),
      `: predicted ${stars(why.predictedRating)} = overall mean ${why.globalMean.toFixed(2)} `,
      `${signed(why.itemMean)} (this movie) ${signed(why.userMean)} (you) `,
      `${signed(why.predictedPreference)} (your taste, from your ratings):`,
    );
    const rows = why.contributions.map((c) =>
      element(
        "tr",
        {},
        element("td", {}, c.title),
        element("td", { class: "number" }, signed(c.preference)),
        element("td", { class: "number" }, signed(c.contribution)),
      ),
    );
    if (why.otherCount) {
      rows.push(
        element(
          "tr",
          {},
          element("td", {}, `${why.otherCount} other rated movies`),
          element("td", {}, ""),
          element("td", { class: "number" }, signed(why.otherContributions)),
        ),
      );
    }
    const table = element(
      "table",
      {},
      element(
        "thead",
        {},
        element(
          "tr",
          {},
          element("th", {}, "rated movie"),
          element("th", {}, "your preference"),
          element("th", {}, "adds"),
        ),
      ),
      element("tbody", {}, ...rows),
    );
    $("#explanation").replaceChildren(sum, table);
  } catch (error) {
    $("#explanation").replaceChildren(element("p", { class: "quiet" }, String(error.message)));
  }
}

let similarTo = null; // the movie whose similar movies are shown

async function similar(item) {
  similarTo = item;
  const metric = $("#metric").value;
  try {
    const answer = await api(
      "GET",
      `/v1/movies/${item.movieId}/similar?k=${SIMILAR}&metric=${metric}`,
    );
    $("#similar-summary").replaceChildren(
      "Nearest to ",
      element("span", { class: "title" }, item.title),
      " in the model's item embeddings (smaller distance: more alike):",
    );
    $("#similar").replaceChildren(
      ...answer.items.map((movie) =>
        element(
          "li",
          { "data-movie-id": movie.movieId },
          ...movieLine(movie, element("span", { class: "value" }, `distance ${movie.distance.toFixed(3)}`)),
        ),
      ),
    );
  } catch (error) {
    $("#similar-summary").textContent = String(error.message);
    $("#similar").replaceChildren();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", search);
  $("#recommend").addEventListener("click", recommend);
  $("#metric").addEventListener("change", () => similarTo && similar(similarTo));
  showRatings();
});
