import Foundation
import SGETensor
import XCTest

/// jsonText and JSONNumber: reports stay writable when a number is not finite.
final class JSONTests: XCTestCase {
    struct Row: Codable { var a: JSONNumber; var b: JSONNumber?; var name: String }

    func testNonFiniteNumbersBecomeNullAndReadBackAsNaN() throws {
        for bad in [Double.nan, .infinity, -.infinity] {
            let text = try jsonText(Row(a: JSONNumber(bad), b: nil, name: "x"), pretty: false)
            XCTAssertEqual(text, #"{"a":null,"name":"x"}"#, "non-finite \(bad) must be null; nil is left out")
            let back = try JSONDecoder().decode(Row.self, from: Data(text.utf8))
            XCTAssertTrue(back.a.value.isNaN)
        }
        let text = try jsonText(Row(a: 1.5, b: JSONNumber(-2), name: "y"), pretty: false)
        XCTAssertEqual(text, #"{"a":1.5,"b":-2,"name":"y"}"#)
        XCTAssertEqual(try JSONDecoder().decode(Row.self, from: Data(text.utf8)).b?.value, -2)
    }

    func testPrettyOutputIsSortedAndMultiLine() throws {
        let text = try jsonText(Row(a: 1.0, b: 2.0, name: "z"))
        XCTAssertTrue(text.contains("\n"))
        XCTAssertLessThan(text.range(of: "\"a\"")!.lowerBound, text.range(of: "\"name\"")!.lowerBound)
    }
}
