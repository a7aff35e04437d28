// DataplaneThread: starts the long-lived loops (a bridge's thread, its kick thread) on POSIX
// threads of their own. They spin, sleep in poll() and are joined when their bridge stops, which
// is what a pthread gives and a task or dispatch queue does not.

#if canImport(Glibc)
import Glibc
#endif

public enum DataplaneThread {
    /// Runs `body` on a new thread and returns the thread for pthread_join. The closure (and what
    /// it captures, the loop's owner) stays alive until `body` returns.
    public static func start(_ body: @escaping () -> Void) -> pthread_t {
        final class Body {
            let run: () -> Void
            init(_ run: @escaping () -> Void) { self.run = run }
        }
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<Body>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        return thread
    }
}
