import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The Go server (examples/dashboard) listens on 127.0.0.1:8000 by default;
// `npm run dev` proxies the hub socket and the auth check to it so the UI
// can be developed with hot reload against a real proxy.
const backend = process.env.PROXYWATCH_UI ?? 'http://127.0.0.1:8000'

export default defineConfig({
  plugins: [vue()],
  define: {
    // Composition API only; no devtools hooks in the shipped build.
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  // Relative asset paths: the Go program embeds dist/ and may serve it
  // under any prefix.
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Sourcemaps would double what the Go binary embeds.
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/start': { target: backend, ws: true, changeOrigin: false },
      '/auth': { target: backend, changeOrigin: false },
      '/ca.pem': { target: backend, changeOrigin: false },
    },
  },
  test: {
    environment: 'happy-dom',
    // A page URL like the Go server's, so relative socket URLs resolve.
    environmentOptions: { happyDOM: { url: 'http://127.0.0.1:8000/' } },
    include: ['test/**/*.test.ts'],
    restoreMocks: true,
    unstubGlobals: true,
  },
})
