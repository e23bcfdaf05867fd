import type { ReactNode } from "react";

import { readIndex } from "../lib/data";

export const metadata = { title: "Model catalogue (manifest-crawler example)" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", margin: "2rem", maxWidth: "60rem" }}>
        <p>
          <a href="/">Model catalogue</a>
        </p>
        {readIndex().synthetic && (
          <p role="note" data-synthetic style={{ background: "#fff3cd", padding: "0.5rem" }}>
            Preview: these models are made up (the crawler's offline emulator).
          </p>
        )}
        {children}
      </body>
    </html>
  );
}
