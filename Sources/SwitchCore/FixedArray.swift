// FixedArray and FixedBytes: the switch's preallocated memory, allocated and released in one place.
//
// Every per-port, per-entry and per-frame table of the dataplane is sized once, when its bridge,
// table or port is set up, and never grows: the per-frame path must not allocate. These two owners
// hold such memory for the object they live in and free it when it goes. They are noncopyable, so
// a table cannot be freed twice or used after its owner freed it, and the hot loops read `base` once
// per batch and then touch raw memory, exactly as with a bare pointer (the subscript compiles to
// the same load or store).

/// `count` elements, initialised at creation and freed with the owner.
public struct FixedArray<Element>: ~Copyable {
    /// The first element. Valid for the owner's lifetime.
    public let base: UnsafeMutablePointer<Element>
    public let count: Int

    /// `count` copies of `value`.
    @inlinable
    public init(repeating value: Element, count: Int) {
        precondition(count >= 0)
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: value, count: count)
        self.count = count
    }

    /// Element `i` is `element(i)`.
    @inlinable
    public init(count: Int, _ element: (Int) -> Element) {
        precondition(count >= 0)
        base = .allocate(capacity: max(count, 1))
        for i in 0..<count { (base + i).initialize(to: element(i)) }
        self.count = count
    }

    /// The elements of `array`.
    @inlinable
    public init(_ array: [Element]) {
        base = .allocate(capacity: max(array.count, 1))
        base.initialize(from: array, count: array.count)
        count = array.count
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// Element `i` in place (no bounds check in release builds, as with a pointer).
    @inlinable
    public subscript(i: Int) -> Element {
        unsafeAddress { UnsafePointer(base + i) }
        nonmutating unsafeMutableAddress { base + i }
    }

    /// Sets every element to `value`.
    @inlinable
    public func fill(with value: Element) { base.update(repeating: value, count: count) }
}

/// `byteCount` bytes of aligned memory (frame pools of in-memory and file ports, the router's
/// queued frames), zeroed unless asked not to: a large pool left untouched costs no resident
/// memory until a frame is written into it.
public struct FixedBytes: ~Copyable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    @inlinable
    public init(byteCount: Int, alignment: Int = 64, zeroed: Bool = true) {
        precondition(byteCount >= 0)
        base = .allocate(byteCount: max(byteCount, 1), alignment: alignment)
        if zeroed { base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
        self.byteCount = byteCount
    }

    deinit { base.deallocate() }
}
