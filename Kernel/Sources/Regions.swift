// The program's mapped regions (Linux's VMAs): address ranges with their permissions. The page
// table holds what is mapped now; a region says what may be mapped there on a fault (anonymous
// memory is demand-paged), as CortenMM keeps the page table as the mapping state and a small
// list beside it for the permissions of what is not there yet.

/// Access permissions of a region (PROT_READ 1, PROT_WRITE 2, PROT_EXEC 4).
struct Protection: OptionSet {
    var rawValue: UInt64
    static let read = Protection(rawValue: 1)
    static let write = Protection(rawValue: 2)
    static let exec = Protection(rawValue: 4)

    /// The user page property: R whenever any access is allowed (x86 has no write-only or
    /// execute-only page), none for PROT_NONE.
    var property: PageProperty {
        var flags: PageFlags = []
        if !isEmpty { flags.insert(.r) }
        if contains(.write) { flags.insert(.w) }
        if contains(.exec) { flags.insert(.x) }
        return .user(flags)
    }
}

/// A mapped region: `start ..< end`, page aligned.
struct Region {
    var start: UInt64
    var end: UInt64
    var protection: Protection
}

/// The regions of a program, sorted and disjoint.
struct RegionList {
    private(set) var regions: [Region] = []

    /// The region containing `address`.
    func find(_ address: UInt64) -> Region? {
        for region in regions where region.start <= address && address < region.end { return region }
        return nil
    }

    /// Whether any region overlaps `start ..< end`.
    func overlaps(_ start: UInt64, _ end: UInt64) -> Bool {
        regions.contains { $0.start < end && start < $0.end }
    }

    /// Adds a region (the range must be free).
    mutating func insert(_ region: Region) {
        let index = regions.firstIndex { $0.start >= region.end } ?? regions.count
        regions.insert(region, at: index)
    }

    /// Removes `start ..< end` from every region, splitting those it cuts.
    mutating func remove(_ start: UInt64, _ end: UInt64) {
        var kept: [Region] = []
        for region in regions {
            if region.end <= start || end <= region.start {
                kept.append(region)
                continue
            }
            if region.start < start { kept.append(Region(start: region.start, end: start, protection: region.protection)) }
            if end < region.end { kept.append(Region(start: end, end: region.end, protection: region.protection)) }
        }
        regions = kept
    }

    /// Sets the protection of `start ..< end` where regions cover it; whether every page of the
    /// range was covered (Linux's mprotect fails with ENOMEM otherwise).
    mutating func protect(_ start: UInt64, _ end: UInt64, _ protection: Protection) -> Bool {
        var covered: UInt64 = 0
        var result: [Region] = []
        for region in regions {
            let low = max(region.start, start), high = min(region.end, end)
            guard low < high else {
                result.append(region)
                continue
            }
            covered += high - low
            if region.start < low { result.append(Region(start: region.start, end: low, protection: region.protection)) }
            result.append(Region(start: low, end: high, protection: protection))
            if high < region.end { result.append(Region(start: high, end: region.end, protection: region.protection)) }
        }
        regions = result
        return covered == end - start
    }

    /// The highest free, page-aligned range of `length` bytes below `top` and above `bottom`.
    func freeRange(length: UInt64, below top: UInt64, above bottom: UInt64) -> UInt64? {
        var candidateEnd = top
        for region in regions.reversed() {
            if region.start >= candidateEnd { continue }
            if region.end <= candidateEnd, candidateEnd - region.end >= length { return candidateEnd - length }
            candidateEnd = min(candidateEnd, region.start)
        }
        return candidateEnd >= bottom + length ? candidateEnd - length : nil
    }
}
