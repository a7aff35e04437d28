// LabTestCase: what every integration test class shares. Each test gets a fresh Lab (unique names),
// and tearDown removes it whatever happened, printing the daemon's log when the test failed.

import Foundation
import XCTest

class LabTestCase: XCTestCase {
    var lab: Lab?

    override func setUpWithError() throws {
        lab = try Lab(binDirectory: try requireIntegrationPrerequisites())
    }

    override func tearDown() {
        if let lab, let run = testRun, run.failureCount + run.unexpectedExceptionCount > 0 {
            print("---- userswitchd log (\(lab.prefix)) ----\n\(lab.daemonLogTail())\n----")
        }
        lab?.tearDown()
        lab = nil
        super.tearDown()
    }

    /// The lab with a started daemon and one bridge.
    func startedLab() throws -> Lab {
        let lab = try XCTUnwrap(lab)
        try lab.startDaemon()
        try lab.addBridge()
        return lab
    }
}
