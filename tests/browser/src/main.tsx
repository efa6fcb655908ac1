// The harness: mounts the seed's component for ?username=..., and records its callbacks.
import React from "react";
import { createRoot } from "react-dom/client";
import { ProfileStatusTracker } from "./ProfileStatusTracker";

type Call = [name: "onCompleted" | "onError", argument: unknown];

declare global {
  interface Window {
    __calls: Call[];
    __checks: number;
  }
}

window.__calls = [];
window.__checks = 0;

// Counts the component's status requests (each `checkStatus` is one fetch).
const realFetch = window.fetch.bind(window);
window.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
  window.__checks += 1;
  return realFetch(input, init);
};

// Stable across renders, as a parent's memoized callbacks would be.
const onCompleted = (profileData: unknown) => {
  window.__calls.push(["onCompleted", profileData]);
};
const onError = (error: string) => {
  window.__calls.push(["onError", error]);
};

const username = new URLSearchParams(window.location.search).get("username") ?? "";
createRoot(document.getElementById("root")!).render(
  <ProfileStatusTracker username={username} onCompleted={onCompleted} onError={onError} />,
);
