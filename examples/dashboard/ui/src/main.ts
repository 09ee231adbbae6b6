import { createPinia } from 'pinia'
import { createApp, watchEffect } from 'vue'
import App from './App.vue'
import { loadToken, saveToken, takeTokenFromURL } from './lib/auth'
import { useConnectionsStore } from './stores/connections'
import { useLogsStore } from './stores/logs'
import { useSettingsStore } from './stores/settings'
import { useSocketStore } from './stores/socket'
import { useTrafficStore } from './stores/traffic'
import { useUIStore } from './stores/ui'
import './style.css'

const app = createApp(App)
app.use(createPinia())

const settings = useSettingsStore()
watchEffect(() => {
  document.documentElement.dataset.theme = settings.dark ? 'dark' : 'light'
})

const ui = useUIStore()
window.addEventListener('hashchange', () => ui.syncFromHash())

// The secret: from the URL the server printed (then removed from the address
// bar), else from an earlier visit. Without one the login screen asks for it.
const socket = useSocketStore()
// The domain stores subscribe to the socket when created: create them all
// now, so that nothing is missed while their views are not on screen.
useTrafficStore()
useConnectionsStore()
useLogsStore()
const fromURL = takeTokenFromURL()
if (fromURL) saveToken(fromURL)
const token = fromURL ?? loadToken()
if (token) socket.start(token)

// Back online or back to the tab: do not sit out the rest of a long backoff.
window.addEventListener('online', () => socket.retryNow())
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') socket.retryNow()
})

app.mount('#app')
